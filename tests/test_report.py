"""genssl-report: run-dir discovery, the HTML / Markdown report, its self-containedness, errors, a browser check.

The fixture writes run directories that follow the evaluation's artefact contract (metrics.json with a
baseline block, metrics.jsonl, .hydra/config.yaml, eval/embedding.npz and the generative PNGs) laid out
as a Hydra multirun folder, so no training is needed and the tests stay fast.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from genssl.cli.report import main, split_list

PNG = b"\x89PNG\r\n\x1a\n"
FACTORS = {"scale": "r2", "rotation": "r2", "flip": "acc"}
# Content / style per method (seed 0; seed 1 adds a small offset). simvae is best on linear and
# style_mean, vicreg on knn: the table must bold exactly those.
METHODS = {
    "simclr": {"linear": 0.80, "knn": 0.78, "nmi": 0.50, "style": 0.20, "rank": 30.0},
    "vicreg": {"linear": 0.79, "knn": 0.83, "nmi": 0.52, "style": 0.25, "rank": 41.0},
    "simvae": {"linear": 0.85, "knn": 0.80, "nmi": 0.55, "style": 0.60, "rank": 12.0},
}
BASELINE = {"linear": 0.75, "knn": 0.74, "nmi": 0.40, "style": 0.30}


def _baseline_block(seed: int) -> dict:
    return {
        "content": {k: BASELINE[k] + 0.004 * seed for k in ("linear", "knn", "nmi")},
        "style": {f: {"metric": m, "linear": 0.3, "mlp": 0.35} for f, m in FACTORS.items()},
        "style_mean": BASELINE["style"],
        "rank_me": 20.0,
    }


def write_run(
    run_dir: Path, method: str, seed: int, data: str = "shapes", *, generative: bool = False, bare: bool = False
) -> Path:
    """A run directory following the evaluation's artefact contract."""
    run_dir.mkdir(parents=True)
    if bare:  # only what every run has: metrics.json with method, data and a content block
        (run_dir / "metrics.json").write_text(
            json.dumps({"method": method, "data": data, "seed": seed, "content": {"linear": 0.70, "knn": 0.69}})
        )
        return run_dir
    v = METHODS[method]
    metrics = {
        "method": method,
        "data": data,
        "seed": seed,
        "content": {"linear": v["linear"] + 0.002 * seed, "knn": v["knn"] - 0.002 * seed, "nmi": v["nmi"]},
        "style": {
            f: {"metric": m, "linear": v["style"] + 0.05 * i, "mlp": v["style"] + 0.1}
            for i, (f, m) in enumerate(FACTORS.items())
        },
        "style_mean": v["style"] + 0.05,
        "rank_me": v["rank"] + seed,
        "train": {"epochs": 2, "steps": 20, "seconds": 3.5, "samples_per_s": 900.0},
        "baseline": _baseline_block(seed),
    }
    if generative:
        metrics["elbo"] = -120.0 - seed
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    lines = [
        {"kind": "step", "epoch": s // 10, "step": s, "loss": 5.0 / s + seed, "samples_per_s": 800.0, "lr": 1e-3}
        for s in range(1, 21)
    ]
    lines += [
        {"kind": "epoch", "epoch": e, "step": 10 * e, "loss": 1.0 / e, "seconds": 1.0, "samples_per_s": 850.0}
        for e in (1, 2)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run_dir / ".hydra").mkdir()
    (run_dir / ".hydra" / "config.yaml").write_text(f"method:\n  name: {method}\ndata:\n  name: {data}\nseed: {seed}\n")
    if generative:
        import matplotlib.pyplot as plt

        (run_dir / "eval").mkdir()
        rng = np.random.default_rng(seed)
        for kind in ("reconstructions", "samples", "traversals"):
            plt.imsave(run_dir / "eval" / f"{kind}.png", rng.random((28, 56)), cmap="gray")
        n = 120
        labels = rng.integers(0, 4, n)
        features = rng.normal(size=(n, 8)).astype(np.float32) + labels[:, None].astype(np.float32)
        np.savez(
            run_dir / "eval" / "embedding.npz",
            features=features,
            labels=labels.astype(np.int64),
            class_names=np.array(["circle", "square", "triangle", "star"]),
            factor_names=np.array(["scale", "rotation"]),
            factors=rng.random((n, 2)).astype(np.float32),
        )
    return run_dir


@pytest.fixture(scope="module")
def multirun(tmp_path_factory) -> Path:
    """A Hydra multirun folder: numbered job dirs (3 methods × 2 seeds + a bare run) and multirun.yaml."""
    root = tmp_path_factory.mktemp("sweep") / "multirun" / "2026-11-22" / "10-00-00"
    job = 0
    for method in METHODS:
        for seed in (0, 1):
            write_run(root / str(job), method, seed, generative=method == "simvae")
            job += 1
    write_run(root / str(job), "byol", 0, bare=True)
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


@pytest.fixture(scope="module")
def report(multirun, tmp_path_factory) -> Path:
    """The report over the multirun folder's jobs, listed one by one in Hydra list syntax (t-SNE on)."""
    out = tmp_path_factory.mktemp("report") / "out"
    jobs = sorted(p for p in multirun.iterdir() if p.is_dir())
    result = run_cli("genssl-report", f"runs=[{','.join(map(str, jobs))}]", f"out={out}", "progress=false")
    assert result.returncode == 0, result.stderr
    return out


def report_main(monkeypatch, capsys, *args: str) -> subprocess.CompletedProcess:
    """``genssl-report`` in this process (saves an interpreter start per call); same result shape as run_cli."""
    monkeypatch.setattr("sys.argv", ["genssl-report", "progress=false", *args])
    try:
        main()
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


def md_table(markdown: str, first_header: str = "| method | seeds |") -> list[list[str]]:
    """The first Markdown table whose header starts with ``first_header``, as rows of cells."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(first_header))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split(" | ")])
    return [rows[0]] + rows[2:]


def test_split_list_accepts_hydra_lists_globs_and_quotes():
    assert split_list("[a,b]") == ["a", "b"]
    assert split_list("['a b', \"c\"]") == ["a b", "c"]
    assert split_list("multirun/x/*") == ["multirun/x/*"]
    assert split_list("[runs/job[0,1],other]") == ["runs/job[0,1]", "other"]
    assert split_list("runs/[ab]*") == ["runs/[ab]*"]


def test_report_writes_both_files_and_pngs(report):
    assert (report / "report.html").is_file() and (report / "report.md").is_file()
    pngs = sorted(p.name for p in report.glob("*.png"))
    for expected in (
        "shapes-content-vs-style.png",
        "shapes-style-factors.png",
        "shapes-training-curves.png",
        "shapes-simvae-reconstructions.png",
        "shapes-simvae-samples.png",
        "shapes-simvae-traversals.png",
        "shapes-simvae-embedding.png",
    ):
        assert expected in pngs, pngs
    assert not [p for p in report.parent.iterdir() if p.name.startswith(".")], "staging directory left behind"


def test_markdown_references_the_pngs_beside_it(report):
    markdown = (report / "report.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", markdown)
    assert links and all((report / link).is_file() and link.endswith(".png") for link in links)
    assert "7 runs" in markdown and "untrained encoder" in markdown


def test_html_is_self_contained_and_every_image_decodes(report):
    page = (report / "report.html").read_text()
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<(link|iframe|object|embed)\b", page)
    assert not re.search(r"<script[^>]*\bsrc=", page) and "url(" not in page
    sources = re.findall(r'\bsrc="([^"]*)"', page)
    assert len(sources) == len(re.findall(r"<img\b", page)) == len(list(report.glob("*.png")))
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1], validate=True).startswith(PNG)


def test_table_marks_best_per_column_and_gains_over_baseline(report):
    rows = md_table((report / "report.md").read_text())
    header, body = rows[0], rows[1:]
    assert [r[0] for r in body] == ["simclr", "vicreg", "simvae", "byol"]
    for column in ("linear", "knn", "nmi", "style_mean", "rank_me"):
        j = header.index(column)
        bold = [r[0] for r in body if r[j].startswith("**")]
        assert len(bold) == 1, (column, bold)
    best = {c: next(r[0] for r in body if r[header.index(c)].startswith("**")) for c in ("linear", "knn")}
    assert best == {"linear": "simvae", "knn": "vicreg"}
    simvae = dict(zip(header, body[2]))
    # Two seeds: mean ± std, and the gain in points over each seed's own baseline (0.851 - 0.752).
    assert simvae["seeds"] == "2"
    assert simvae["linear"] == "**0.851** ± 0.001 (+9.9)"
    assert dict(zip(header, body[1]))["rank_me"] == "**41.50** ± 0.71"
    byol = dict(zip(header, body[3]))
    assert byol["linear"] == "0.700" and byol["style_mean"] == "–"
    factor_rows = md_table((report / "report.md").read_text(), "| method | seeds | scale")
    assert factor_rows[0][2:] == ["scale (r2)", "rotation (r2)", "flip (acc)"]


def test_glob_and_multirun_folder_inputs(multirun, tmp_path, monkeypatch, capsys):
    by_glob, by_folder = tmp_path / "glob", tmp_path / "folder"
    for out, runs in ((by_glob, f"runs={multirun}/*"), (by_folder, f"runs={multirun}")):
        result = report_main(monkeypatch, capsys, runs, f"out={out}", "embedding=none")
        assert result.returncode == 0, result.stderr
        assert "7 runs" in (out / "report.md").read_text()
    # Re-running into an existing report directory replaces the report in place.
    again = report_main(monkeypatch, capsys, f"runs=[{multirun}/0,{multirun}/2]", f"out={by_glob}", "embedding=none")
    assert again.returncode == 0, again.stderr
    assert "2 runs" in (by_glob / "report.md").read_text()
    assert "2 runs" in (by_glob / "report.html").read_text()


def test_several_datasets_get_one_section_each(multirun, tmp_path, monkeypatch, capsys):
    other = write_run(tmp_path / "runs" / "digits-simclr", "simclr", 0, data="digits")
    out = tmp_path / "out"
    result = report_main(
        monkeypatch, capsys, f"runs=[{multirun}/0,{multirun}/2,{other}]", f"out={out}", "embedding=none"
    )
    assert result.returncode == 0, result.stderr
    markdown = (out / "report.md").read_text()
    assert "## Dataset: shapes" in markdown and "## Dataset: digits" in markdown


def test_zero_epoch_runs_form_their_own_untrained_group(tmp_path):
    """A separate ``trainer.max_epochs=0`` run (the older way to get a baseline) is not averaged as a seed."""
    from genssl.report.aggregate import group_runs
    from genssl.report.collect import find_run_dirs, load_runs

    trained = write_run(tmp_path / "simclr-0", "simclr", 0)
    untrained = write_run(tmp_path / "simclr-untrained", "simclr", 0)
    metrics = json.loads((untrained / "metrics.json").read_text())
    metrics["train"]["epochs"] = 0
    (untrained / "metrics.json").write_text(json.dumps(metrics))
    groups = group_runs(load_runs(find_run_dirs([str(tmp_path)])))["shapes"]
    assert [(g.name, [r.path for r in g.runs]) for g in groups] == [
        ("simclr", [trained.resolve()]),
        ("simclr (untrained)", [untrained.resolve()]),
    ]


def test_runs_launched_with_other_settings_form_their_own_groups(tmp_path):
    """Runs of one method that differ in an override (a prior, a long tail) are compared, not averaged as
    seeds; seeds, threads and the logger do not split a group; a damaged overrides.yaml only warns."""
    from genssl.report.aggregate import group_runs
    from genssl.report.collect import find_run_dirs, load_runs

    def run(name, seed, *overrides):
        path = write_run(tmp_path / name, "simclr", seed)
        common = ["method=simclr", f"seed={seed}", "trainer.max_epochs=2", f"trainer.num_threads={seed + 1}"]
        (path / ".hydra").mkdir(exist_ok=True)
        (path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in [*common, *overrides]))
        return path.resolve()

    plain = [run("plain-0", 0), run("plain-1", 1)]
    prior = [run("vmf-0", 0, "model/prior=vmf_mixture"), run("vmf-1", 1, "model/prior=vmf_mixture", "logger=none")]
    tail = run("tail-0", 0, "model/prior=vmf_mixture", "+data.long_tail=10")
    weights = [run(f"weights-{i}", 0, "model/prior=class_marginal", f"model.prior.weights=[{w}]") for i, w in
               enumerate([",".join(["0.0125"] * 80), ",".join(["0.0125"] * 79 + ["0.0126"])])]  # fmt: skip
    damaged = write_run(tmp_path / "damaged", "simclr", 2)
    (damaged / ".hydra").mkdir(exist_ok=True)
    (damaged / ".hydra" / "overrides.yaml").write_text("- [unclosed")
    groups = group_runs(load_runs(find_run_dirs([str(tmp_path)])))["shapes"]
    found = {g.name: sorted(r.path for r in g.runs) for g in groups}
    long_names = [name for name in found if "model.prior.weights" in name]
    assert len(long_names) == 2 and all(len(name) < 120 for name in long_names)  # cut, and still distinct
    assert sorted(found[name][0] for name in long_names) == sorted(weights)
    assert {name: paths for name, paths in found.items() if name not in long_names} == {
        "simclr": sorted([*plain, damaged.resolve()]),
        "simclr [model/prior=vmf_mixture]": sorted(prior),
        "simclr [data.long_tail=10, model/prior=vmf_mixture]": [tail],
    }


def assert_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    message = result.stderr.strip()
    assert message.startswith("genssl: error:") and "\n" not in message and "Traceback" not in message, message
    for fragment in fragments:
        assert fragment in message, message


def test_bad_inputs_exit_2_and_write_nothing(multirun, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    empty = tmp_path / "empty"
    empty.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text("{not json")
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    # The console script once, end to end; the other cases in-process.
    assert_error(run_cli("genssl-report", f"runs=[{empty}]", f"out={out}"), str(empty), "metrics.json")

    def run(*args: str) -> subprocess.CompletedProcess:
        return report_main(monkeypatch, capsys, *args)

    assert_error(run(f"runs={tmp_path}/nothing-*", f"out={out}"), "nothing-*")
    assert_error(run(f"runs=[{multirun}/0,{tmp_path}/missing]", f"out={out}"), "missing")
    assert_error(run(f"runs=[{multirun}/0,{broken}]", f"out={out}"), str(broken / "metrics.json"), "not valid JSON")
    assert_error(run(f"runs=[{multirun}/0]", f"out={a_file}"), str(a_file), "is a file")
    assert_error(run("runs=[]", f"out={out}"), "No runs given")
    assert_error(run(f"runs=[{multirun}/0]"), "out=")
    assert_error(run(f"runs=[{multirun}/0]", f"out={out}", "colour=red"), "colour")
    assert not out.exists() and a_file.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "empty", "file.txt"]


def test_a_crash_mid_report_leaves_nothing_behind(multirun, tmp_path, monkeypatch, capsys):
    def broken_figure(*args, **kwargs):
        raise RuntimeError("figure failed")

    monkeypatch.setattr("genssl.report.figures.training_curves", broken_figure)
    with pytest.raises(RuntimeError, match="figure failed"):
        report_main(monkeypatch, capsys, f"runs=[{multirun}/0]", f"out={tmp_path / 'out'}", "embedding=none")
    assert list(tmp_path.iterdir()) == []


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.browser
@pytest.mark.skipif(
    _chromium() is None,
    reason="Chromium is not on PATH (apt-get install chromium; `make test-all` installs it when run as root)",
)
def test_report_opens_in_headless_chromium_with_every_image_loaded(report, tmp_path):
    """The report's inline script marks each <img> and <body>; --dump-dom shows the verdict."""
    page = (report / "report.html").resolve()
    command = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    images = re.findall(r"<img\b[^>]*>", dom)
    assert len(images) == len(list(report.glob("*.png"))) > 0
    assert all('data-loaded="ok"' in tag for tag in images), [t[:80] for t in images if 'data-loaded="ok"' not in t]
    assert re.search(r'<body[^>]*data-images="ok"', dom), dom[:500]
