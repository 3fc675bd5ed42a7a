"""`geolab course run` starts its kernels with CurveZMQ transport encryption, so ipykernel's
"Kernel is running over TCP without encryption" warning never reaches the user's terminal:
the traffic is encrypted, nothing is hidden."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from test_course import KERNEL, write_nb

from geolab import course
from geolab.envcheck import kernel_manager_config


def test_course_run_kernels_are_encrypted_and_quiet(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """One notebook through run_course: the kernel holds a CurveZMQ secret key (so it was
    started encrypted) and neither stdout nor stderr carries the TCP warning."""
    try:
        course.check_kernel(KERNEL)
    except course.CourseError as exc:
        pytest.skip(f"needs the Jupyter kernel 'geolab' (make setup): {exc}")
    if "transport_encryption" not in kernel_manager_config().get("KernelManager", {}):
        pytest.skip("this jupyter_client/libzmq cannot encrypt kernel traffic (and ipykernel does not warn)")
    nbs = tmp_path / "nbs"
    write_nb(
        nbs / "01_quiet.ipynb",
        'data = "geoworld"\nresults_path = ""',
        "from ipykernel.kernelapp import IPKernelApp\nprint('encrypted', IPKernelApp.instance().curve_secretkey is not None)",
    )
    run = course.run_course({"common": {"data": "geoworld"}, "notebooks": {}}, tmp_path / "run",
                            notebooks_dir=nbs, kernel_name=KERNEL, log=lambda _line: None)
    assert run.ok
    captured = capfd.readouterr()
    assert "without encryption" not in captured.out + captured.err
    executed = nbformat.read(str(tmp_path / "run" / "notebooks" / "01_quiet.ipynb"), as_version=4)
    assert "encrypted True" in executed.cells[-1].outputs[0]["text"]
