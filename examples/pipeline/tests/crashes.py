"""consumer.py failing at frame 3, in the middle of the run: pipeline_demo
must notice that the consumer is gone, say so and exit 1."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import consumer  # noqa: E402  (after the path it is found on)

honest_digest = consumer.digest


def crash(frame, sent):
    if consumer.stamp(frame)[0] == 3:
        raise RuntimeError("failing on purpose at frame 3")
    return honest_digest(frame, sent)


consumer.digest = crash
consumer.main()
