"""Error classes: generated from TB_STATUS_MAP, each raised by a real failure."""

import errno
import os
import resource

import pytest

import tensorbuf
from tensorbuf import core

# The natural builtin of each status (besides tensorbuf.Error).
BUILTINS = {
    "TB_ERR_INVALID_ARGUMENT": ValueError,
    "TB_ERR_SHAPE": ValueError,
    "TB_ERR_DTYPE": TypeError,
    "TB_ERR_OUT_OF_RANGE": IndexError,
    "TB_ERR_NO_MEMORY": MemoryError,
    "TB_ERR_SYSTEM": OSError,
    "TB_ERR_UNSUPPORTED": NotImplementedError,
    "TB_ERR_BAD_FD": OSError,
    "TB_ERR_READ_ONLY": PermissionError,
    "TB_ERR_LAYOUT": ValueError,
    "TB_ERR_VERSION": ValueError,
    "TB_ERR_TIMEOUT": TimeoutError,
    "TB_ERR_CLOSED": ConnectionError,
    "TB_ERR_PROTOCOL": ValueError,
}


def statuses():
    """(code, name) of every error status the library knows: the C names
    are tried downward from -1 until tb_status_name stops knowing them."""
    found, code = [], -1
    while core.tb_status_name(code) != "TB_ERR_UNKNOWN":
        found.append((code, core.tb_status_name(code)))
        code -= 1
    return found


def test_one_class_per_status_under_error():
    assert len(statuses()) == len(tensorbuf.errors) >= 14
    for code, name in statuses():
        cls = tensorbuf.errors[code]
        assert issubclass(cls, tensorbuf.Error)
        assert cls.code == code and cls.name == name
        assert cls.__doc__ == core.tb_status_message(code)
        assert getattr(tensorbuf, cls.__name__) is cls
        assert cls.__module__ == "tensorbuf"


def test_each_class_derives_from_its_builtin():
    assert set(BUILTINS) == {name for _, name in statuses()}
    for code, name in statuses():
        assert issubclass(tensorbuf.errors[code], BUILTINS[name]), name


def test_class_names_follow_the_status_names():
    assert tensorbuf.errors[-4].__name__ == "OutOfRangeError"
    assert tensorbuf.errors[-8].__name__ == "BadFdError"
    assert tensorbuf.Error.code is None and tensorbuf.Error.name is None


# ---- a real failure for every status --------------------------------------


def raise_invalid_argument():
    tensorbuf.Tensor((2,), "u8", memory="no-such-kind")


def raise_shape():
    tensorbuf.Tensor((2, -3), "f32")


def raise_dtype():
    tensorbuf.Tensor((2,), "f33")


def raise_out_of_range():
    tensorbuf.Tensor((2,), "u8")[5]


def raise_no_memory():
    tensorbuf.Tensor((1 << 40, 1 << 22), "u8", memory="heap")


def raise_system():
    tensor = tensorbuf.Tensor((4,), "u8", memory="shm")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    opened = []
    try:
        while True:
            opened.append(os.open("/dev/null", os.O_RDONLY))
    except OSError:
        pass
    try:
        tensor.export_fd()
    finally:
        for fd in opened:
            os.close(fd)


def raise_unsupported():
    tensorbuf.Tensor((4,), "u8", memory="heap").export_fd()


def raise_bad_fd():
    read_end, write_end = os.pipe()
    try:
        tensorbuf.import_fd(read_end, (4,))
    finally:
        os.close(read_end)
        os.close(write_end)


def raise_read_only():
    tensor = tensorbuf.Tensor.from_buffer(tensorbuf.Buffer.wrap(b"abcd"), (4,))
    tensor[0] = 1


def raise_layout():
    tensorbuf.Tensor((4, 4), "u8")[:, ::2].reshape(8)


def raise_version():
    core.tb_tensor_new(core.TB_DTYPE_U8, (2,), {"version": 99})


def raise_timeout():
    core.tb_fence_wait(core.tb_fence_new(0), 5, 0)


def raise_closed():
    sender, receiver = core.tb_channel_pair()
    del sender
    core.tb_channel_recv(receiver, 1000)


def raise_protocol():
    core.tb_tensor_import(b"not a descriptor", [])


TRIGGERS = {
    "TB_ERR_INVALID_ARGUMENT": raise_invalid_argument,
    "TB_ERR_SHAPE": raise_shape,
    "TB_ERR_DTYPE": raise_dtype,
    "TB_ERR_OUT_OF_RANGE": raise_out_of_range,
    "TB_ERR_NO_MEMORY": raise_no_memory,
    "TB_ERR_SYSTEM": raise_system,
    "TB_ERR_UNSUPPORTED": raise_unsupported,
    "TB_ERR_BAD_FD": raise_bad_fd,
    "TB_ERR_READ_ONLY": raise_read_only,
    "TB_ERR_LAYOUT": raise_layout,
    "TB_ERR_VERSION": raise_version,
    "TB_ERR_TIMEOUT": raise_timeout,
    "TB_ERR_CLOSED": raise_closed,
    "TB_ERR_PROTOCOL": raise_protocol,
}


def test_every_status_has_a_trigger():
    assert set(TRIGGERS) == {name for _, name in statuses()}


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_real_failure_raises_the_class(name):
    if name == "TB_ERR_SYSTEM" and not tensorbuf.memory_available("shm"):
        pytest.skip("needs shm memory for an fd to fail to dup")
    code = core.__dict__[name]
    cls = tensorbuf.errors[code]
    with pytest.raises(cls) as caught:
        TRIGGERS[name]()
    error = caught.value
    assert type(error) is cls
    assert error.code == code and error.name == name
    assert isinstance(error, BUILTINS[name]) and isinstance(error, tensorbuf.Error)
    message = error.args[-1]  # OSError subclasses put errno first
    assert message.startswith("tb_") and ": " in message


def test_system_error_carries_errno():
    if not tensorbuf.memory_available("shm"):
        pytest.skip("needs shm memory for an fd to fail to dup")
    with pytest.raises(tensorbuf.SystemError) as caught:
        raise_system()
    assert caught.value.errno == errno.EMFILE
    assert "tb_tensor_export_fd" in caught.value.strerror


def test_errors_outside_the_library_are_python_errors():
    # Argument types are checked before the C call: TypeError, not Error.
    with pytest.raises(TypeError):
        tensorbuf.Tensor((2.5,), "f32")
    with pytest.raises(TypeError):
        core.tb_tensor_new(core.TB_DTYPE_U8, (2,), {"colour": 1})
    with pytest.raises(OverflowError):
        tensorbuf.Tensor((1 << 64,), "u8")


def test_python_side_errors_use_the_same_classes():
    with pytest.raises(tensorbuf.InvalidArgumentError):
        tensorbuf.Tensor((2,), "u8").map("x")
    with pytest.raises(tensorbuf.DtypeError):
        tensorbuf.from_numpy(__import__("numpy").zeros(2, "complex64"))
