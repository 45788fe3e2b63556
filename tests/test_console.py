"""The quiet main job: library warnings and Lightning's messages go to the log file, not the
terminal; progress lines carry an ETA."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap

from benchmark3dface.console import format_seconds


def test_library_output_goes_to_the_log_file(tmp_path):
    log = tmp_path / "run.log"
    code = textwrap.dedent(f"""
        import logging, warnings
        from pathlib import Path
        from benchmark3dface.console import route_library_output
        route_library_output(Path({str(log)!r}))
        warnings.warn("a library deprecation", DeprecationWarning)
        logging.getLogger("lightning.pytorch.utilities.rank_zero").info("GPU available: False")
        import lightning as L
        L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
        print("tables")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "tables"
    assert out.stderr.strip() == "", out.stderr  # nothing from the libraries on the terminal
    text = log.read_text()
    assert "a library deprecation" in text and "GPU available" in text


def test_phase_progress_line_and_eta():
    from benchmark3dface.benchmark.progress import PhaseProgress

    p = PhaseProgress("deep3d", stream=io.StringIO())
    p._start_step = 0
    assert p.line(25, 100, 50.0) == "  deep3d: training step 25/100 (25%), 50s, ETA 2m30s"
    assert format_seconds(3725) == "1h02m" and format_seconds(61) == "1m01s"
