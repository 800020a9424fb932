"""consumer.py misreading: from frame 2 on it reports checksums one too
high. pipeline_demo must say that the checksums disagree and exit 1."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import consumer  # noqa: E402  (after the path it is found on)

honest_digest = consumer.digest


def misread(frame, sent):
    checksum, mean, latency = honest_digest(frame, sent)
    number, _ = consumer.stamp(frame)
    return (checksum + (number >= 2)) & 0xFFFFFFFF, mean, latency


consumer.digest = misread
consumer.main()
