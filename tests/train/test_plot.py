import json

import pytest

from slm.cli import main
from slm.errors import SlmError
from slm.train.metrics import MetricsLog, plot_run, read_metrics


def test_plot_writes_a_png(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    for step in range(1, 21):
        log.write({"step": step, "loss": 5.0 / step, "lr": 1e-3})
        if step % 10 == 0:
            log.write({"step": step, "val_loss": 6.0 / step})
    log.close()
    png = plot_run(tmp_path)
    assert png == tmp_path / "loss.png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert main(["plot", str(tmp_path), "--out", str(tmp_path / "x.png")]) == 0
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_of_a_directory_without_metrics_is_a_clear_error(tmp_path, capsys):
    with pytest.raises(SlmError, match="metrics.jsonl"):
        plot_run(tmp_path)
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in capsys.readouterr().err


def test_resumed_log_drops_steps_after_the_checkpoint(tmp_path):
    log = MetricsLog(tmp_path, tensorboard=False)
    for step in range(1, 8):
        log.write({"step": step, "loss": float(step)})
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 8, "lo')  # a line cut by a kill
    MetricsLog(tmp_path, resume_step=4, tensorboard=False).close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4]
    MetricsLog(tmp_path, tensorboard=False).close()  # a fresh run starts a fresh log
    assert read_metrics(tmp_path) == []
