"""``fedshield`` command line: run experiments, list and compare runs, run attack x defense grids.

Examples::

    fedshield run                                  # the built-in quickstart experiment
    fedshield run examples/mcmahan_2nn_iid.toml --set server.rounds=20
    fedshield run --resume runs/quickstart-20261123-101500
    fedshield runs
    fedshield compare runs/a runs/b
    fedshield bench examples/bench_mnist.toml      # attack x defense matrix
    fedshield bench --resume runs/bench_mnist-20261123-160759
    fedshield attack runs/quickstart-20261123-101500 --kind ig --round 3 --client 0
    fedshield reproduce fedre                      # FedRE's Tables 1-4 + Fig. 6 -> docs/fedre.md
    fedshield reproduce fedqsn                     # FedQSN sweep (masks x bits)  -> docs/fedqsn.md
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

app = typer.Typer(
    name="fedshield",
    help="Federated learning with privacy and security: run, attack, measure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code=2)


@app.command()
def run(
    experiment: Annotated[
        Path | None,
        typer.Argument(help="experiment TOML file; omitted = the built-in quickstart"),
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="override a key: --set server.rounds=20 (repeatable)"),
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="continue a run directory from its last checkpoint"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="root folder for run directories")
    ] = None,
) -> None:
    """Run an experiment (default: MNIST, 20 Dirichlet(0.5) clients, 2NN, 10 per round)."""
    from fedshield.config import ConfigError, default_config, from_dict, load_toml
    from fedshield.engine import run_experiment

    overrides = list(set_ or [])
    if out is not None:
        overrides.append(f"output.dir={str(out)!r}")
    try:
        if resume is not None:
            if experiment is not None or overrides:
                raise _fail("--resume takes the run directory's own config: give no file or --set")
            from fedshield.report.store import RunStore

            try:
                store = RunStore.open(resume)
            except FileNotFoundError as exc:
                raise _fail(str(exc)) from exc
            cfg = from_dict(store.read_config())
            result = run_experiment(cfg, resume=resume)
        else:
            cfg = load_toml(experiment, overrides) if experiment else default_config(overrides)
            result = run_experiment(cfg)
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
    console.print(f"run directory: {result.run_dir}", highlight=False)


@app.command()
def bench(
    bench_file: Annotated[
        Path | None, typer.Argument(help="bench TOML file (attacks x defenses x heterogeneity)")
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option("--resume", help="finish the missing cells of an existing bench directory"),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="root folder for bench directories")] = Path(
        "runs"
    ),
) -> None:
    """Run an attack x defense grid, print the matrix, save CSV and a heatmap."""
    from rich.table import Table

    from fedshield.bench import (
        create_bench_dir,
        load_bench,
        matrix,
        open_bench_dir,
        run_bench,
        write_outputs,
    )
    from fedshield.config import ConfigError

    if (bench_file is None) == (resume is None):
        raise _fail("give a bench file, or --resume with a bench directory (not both)")
    try:
        if resume is not None:
            try:
                spec = open_bench_dir(resume)
            except FileNotFoundError as exc:
                raise _fail(str(exc)) from exc
            bench_dir = resume
        else:
            assert bench_file is not None
            spec = load_bench(bench_file)
            bench_dir = create_bench_dir(spec, out)
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    console.print(f"bench directory: {bench_dir}", highlight=False)

    def show(i: int, total: int, rec: dict[str, Any]) -> None:
        if "error" in rec:
            console.print(f"[{i}/{total}] {rec['key']}: [red]failed[/] {escape(str(rec['error']))}")
            return
        acc = rec.get("accuracy")
        asr = rec.get("backdoor_success")
        extra = f"  backdoor {100 * float(asr):.1f}%" if isinstance(asr, float) else ""
        console.print(
            f"[{i}/{total}] {rec['key']}: accuracy {100 * float(acc or 0):.2f}%{extra}"
            f"  ({float(rec.get('wall_s') or 0):.1f} s)",
            highlight=False,
        )

    try:
        run_bench(spec, bench_dir, on_cell=show)
    except KeyboardInterrupt:
        write_outputs(spec, bench_dir)
        err.print(
            "interrupted; finished cells are saved. Continue with: "
            f"fedshield bench --resume {bench_dir}"
        )
        raise typer.Exit(code=130) from None
    records = write_outputs(spec, bench_dir)
    for h in spec.heterogeneity:
        rows = matrix(spec, records, h)
        table = Table(title=f"{spec.name}: test accuracy % (backdoor: acc / ASR), {h}")
        for col in rows[0]:
            table.add_column(col)
        for row in rows[1:]:
            table.add_row(*row)
        console.print(table)
    console.print(f"results: {bench_dir / 'results.csv'}, {bench_dir / 'heatmap.png'}")


@app.command("runs")
def runs_cmd(
    root: Annotated[Path, typer.Option("--root", help="folder holding run directories")] = Path(
        "runs"
    ),
) -> None:
    """List past runs (newest first)."""
    from fedshield.report.tables import list_runs, runs_table

    infos = list_runs(root)
    if not infos:
        console.print(f"no runs under {root}")
        return
    console.print(runs_table(infos))


@app.command()
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="two or more run directories")],
    plot: Annotated[
        Path | None, typer.Option("--plot", help="also write an accuracy-over-rounds PNG here")
    ] = None,
) -> None:
    """Compare runs side by side."""
    from fedshield.report.plots import plot_comparison
    from fedshield.report.store import RunStore
    from fedshield.report.tables import compare_table

    try:
        console.print(compare_table(run_dirs))
        if plot is not None:
            runs = {str(d): RunStore.open(d).read_metrics() for d in run_dirs}
            console.print(f"plot: {plot_comparison(runs, plot)}")
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from exc


@app.command()
def attack(
    run_dir: Annotated[Path, typer.Argument(help="a run directory written by fedshield run")],
    kind: Annotated[
        str,
        typer.Option(
            "--kind",
            help="idlg, dlg, ig, fedavg_ig (gradient inversion); loss_threshold, lira_online, "
            "lira_offline (membership inference)",
        ),
    ] = "ig",
    round_: Annotated[int, typer.Option("--round", help="1-based round to attack")] = 1,
    client: Annotated[
        list[int] | None,
        typer.Option("--client", help="client id to attack (repeatable; default: the first)"),
    ] = None,
    view: Annotated[
        str, typer.Option("--view", help="server, server_sum (secure aggregation) or client")
    ] = "server",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="attack parameter: --set iterations=4000 (repeatable)"),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="root for the replay (default RUN/attacks)")
    ] = None,
) -> None:
    """Run one privacy attack on a saved run (replayed deterministically up to the round)."""
    from rich.table import Table

    from fedshield.attacks.privacy.replay import attack_saved_run
    from fedshield.config import ConfigError, parse_override

    entry: dict[str, Any] = {"kind": kind, "view": view, "rounds": [round_]}
    if client:
        entry["targets"] = list(client)
    for item in set_ or []:
        try:
            keys, value = parse_override(item)
        except ConfigError as exc:
            raise _fail(str(exc)) from exc
        if len(keys) != 1:
            raise _fail(f"--set {item!r}: give one attack parameter (e.g. iterations=4000)")
        entry[keys[0]] = value
    try:
        console.print(f"replaying {run_dir} up to round {round_} ...", highlight=False)
        rep = attack_saved_run(run_dir, entry, out_dir=out)
    except FileNotFoundError as exc:
        raise _fail(str(exc)) from exc
    except ConfigError as exc:
        raise _fail(str(exc)) from exc
    except KeyboardInterrupt:
        raise typer.Exit(code=130) from None
    if not rep.consistent:
        err.print(
            f"[yellow]warning:[/] the replay differs from the saved run in rounds "
            f"{rep.mismatches} (different fedshield/torch version or hardware?)",
            highlight=False,
        )
    if not rep.results:
        console.print("no attack ran (no upload in that round for the view)")
    skip = {"index", "psnr_per_image", "ssim_per_image", "grid"}
    keys = [k for r in rep.results for k in r if k not in skip]
    cols = list(dict.fromkeys(keys))
    table = Table(title=f"{kind} on {run_dir}")
    for c in cols:
        table.add_column(c)
    for r in rep.results:
        table.add_row(*[_cell(r.get(c)) for c in cols])
    console.print(table)
    console.print(f"replay and image grids: {rep.replay_dir}", highlight=False)


@app.command()
def reproduce(
    paper: Annotated[str, typer.Argument(help="which paper: fedre or fedqsn")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Markdown report to write [default: docs/PAPER.md]"),
    ] = None,
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            "--runs-dir",
            help="run directories and the results cache (resumable) [default: runs/PAPER]",
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="a minutes-long smoke version (tiny data, 2 rounds)")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="master seed")] = 0,
) -> None:
    """Regenerate a paper's tables on fedshield (fedre: ~55 min on 2 cores; fedqsn: see
    docs/fedqsn.md for its time; rerunning the same command resumes from the finished runs
    cached in --runs-dir)."""
    from fedshield.reproduce import REPRODUCTIONS

    if paper not in REPRODUCTIONS:
        raise _fail(f"unknown paper {paper!r}: choose one of {', '.join(REPRODUCTIONS)}")
    if seed < 0:
        raise _fail(f"--seed must be >= 0, got {seed}")
    out = out or Path(f"docs/{paper}.md")
    runs_dir = runs_dir or Path(f"runs/{paper}")
    if paper == "fedre":
        from fedshield.reproduce.fedre import run_from_cli
    else:
        from fedshield.reproduce.fedqsn import run_from_cli
    results = run_from_cli(quick, str(runs_dir), str(out), seed)
    console.print(
        f"wrote {out} ({results['seconds'] / 60:.1f} min); results in {runs_dir}/{paper}.json",
        highlight=False,
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def main() -> None:
    """Entry point."""
    app()
