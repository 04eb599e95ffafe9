"""`xihu dispatch ...`: train, evaluate and manage the dispatch models."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from sqlalchemy.orm import Session, sessionmaker

from xihu.core.errors import DomainError
from xihu.core.security import Actor
from xihu.dispatch.schemas import ModelVersionRead

app = typer.Typer(help="智能派单 (intelligent dispatch): 训练、评估、模型版本", no_args_is_help=True)

CLI_ACTOR_NAME = "命令行"
_CSV_HELP = "CSV: title,text,label"
EVALUATION_KEYS = ("n", "accuracy", "macro_f1", "auto_rate", "auto_precision", "ms_per_appeal")
# messages of CategoryModel.fit (+ "saving"), to size the progress bar: normalizing, vectorizing, 5 folds,
# calibrating, averaging the fold models, done, saving
_TRAIN_STEPS = 11


def _actor() -> Actor:
    return Actor.system(CLI_ACTOR_NAME)


@contextmanager
def _session() -> Iterator[Session]:
    """A unit of work on the configured database (commits once at the end)."""
    from xihu.core.config import get_settings
    from xihu.core.db import make_engine, make_session_factory, unit_of_work

    engine = make_engine(get_settings().database_url)
    try:
        with unit_of_work(make_session_factory(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _data_dir() -> Path:
    from xihu.core.config import get_settings

    return get_settings().data_dir


def _fail(message: str) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=1)


def _metrics_lines(v: ModelVersionRead) -> list[str]:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x * 100:.1f}%"

    return [
        f"版本 (version): {v.version}{'  [已启用 active]' if v.active else ''}",
        f"训练样本 (n_train): {v.n_train}（其中反馈样本 feedback {v.n_feedback}）",
        f"准确率 (accuracy): {pct(v.accuracy)}    宏平均F1 (macro_f1): {pct(v.macro_f1)}",
        f"自动派单率 (auto_rate): {pct(v.auto_rate)}    "
        f"自动派单准确率 (auto_precision): {pct(v.auto_precision)}",
        f"阈值 (threshold): {v.threshold:.4f}    文件 (file): {v.path}",
        *_by_label_lines(v, pct),
        "以上指标为训练数据上的交叉验证结果 (cross-validated on the training data)",
    ]


def _by_label_lines(v: ModelVersionRead, pct: Callable[[float | None], str]) -> list[str]:
    """One line per category, the weakest (lowest F1) first: where corrections help most."""
    by_label = v.metrics.get("by_label") or {}
    ordered = sorted(by_label.items(), key=lambda kv: kv[1].get("f1", 0.0))
    return [
        f"  {label}: 样本 {m.get('n', 0)}  精确率 {pct(m.get('precision'))}  召回率 {pct(m.get('recall'))}  "
        f"F1 {pct(m.get('f1'))}  自动派单率 {pct(m.get('auto_rate'))}"
        for label, m in ordered
    ]


@app.command()
def train(
    input: Path = typer.Option(
        ..., "--input", "-i", exists=True, dir_okay=False, help="CSV: title,text,label"
    ),
    activate: bool = typer.Option(True, "--activate/--no-activate", help="训练后立即启用"),
    note: str = typer.Option("", "--note", help="版本备注"),
) -> None:
    """Train a new model version from a CSV (plus labelled feedback) and save it under the data directory."""
    from xihu.dispatch import training

    try:
        rows = training.rows_from_csv(input)
    except DomainError as exc:
        raise _fail(f"读取样本失败：{exc.message}") from exc
    if not rows:
        raise _fail(f"{input} 中没有带类别标签的样本（需要 title,text,label 列）")
    typer.echo(f"读取样本 (rows read): {len(rows)}", err=True)
    actor = _actor()
    version = _with_progress(
        lambda factory, step: training.train_in_steps(
            factory,
            lambda session: training.training_set(session=session, actor=actor, rows=rows, note=note),
            lambda session, to_learn, model: training.save_version(
                session=session,
                actor=actor,
                training=to_learn,
                model=model,
                data_dir=_data_dir(),
                activate=activate,
                progress=step,
            ),
            step,
        )
    )
    for line in _metrics_lines(version):
        typer.echo(line)
    if not version.active:
        for concern in version.concerns:
            typer.echo(f"不如当前版本 (worse than the active version): {concern}")
        hint = " --confirm" if version.concerns else ""
        typer.echo(f"未启用；启用请运行 xihu dispatch activate {version.version}{hint}")


@app.command()
def retrain(note: str = typer.Option("", "--note", help="版本备注")) -> None:
    """Train a new, inactive version on the active version's rows plus all labelled feedback."""
    from xihu.dispatch import training

    version = _with_progress(
        lambda factory, step: training.retrain_in_steps(
            factory, actor=_actor(), data_dir=_data_dir(), note=note, progress=step
        )
    )
    for line in _metrics_lines(version):
        typer.echo(line)
    for concern in version.concerns:
        typer.echo(f"不如当前版本 (worse than the active version): {concern}")
    hint = " --confirm" if version.concerns else ""
    typer.echo(f"未启用；核对指标后运行 xihu dispatch activate {version.version}{hint}")


def _with_progress(
    train: Callable[[sessionmaker[Session], Callable[[str], None]], ModelVersionRead],
) -> ModelVersionRead:
    """Run a training with a progress bar on stderr; a domain error exits with it.

    `train` gets a session factory: it reads and saves in transactions of their own and fits with none open,
    so a server running on the same SQLite database keeps taking appeals meanwhile.
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from xihu.core.config import get_settings
    from xihu.core.db import make_engine, make_session_factory

    progress = Progress(
        SpinnerColumn(),
        TextColumn("[bold]训练模型[/bold] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    engine = make_engine(get_settings().database_url)
    try:
        with progress:
            task = progress.add_task("starting", total=_TRAIN_STEPS)

            def step(message: str) -> None:
                progress.update(task, advance=1, description=message)

            version = train(make_session_factory(engine), step)
            progress.update(task, completed=_TRAIN_STEPS, description="done")
    except DomainError as exc:
        raise _fail(f"训练失败：{exc.message}") from exc
    finally:
        engine.dispose()
    return version


@app.command()
def evaluate(
    input: Path = typer.Option(
        ..., "--input", "-i", exists=True, dir_okay=False, help="CSV: title,text,label"
    ),
    as_json: bool = typer.Option(False, "--json", help="只输出一个 JSON 对象"),
) -> None:
    """Evaluate the active model on a labelled CSV (accuracy, macro-F1, auto-dispatch rate and precision)."""
    from xihu.dispatch import classifier, model_cache

    try:
        rows = classifier.labelled_rows(input)
    except DomainError as exc:
        raise _fail(f"读取样本失败：{exc.message}") from exc
    with _session() as session:
        loaded = model_cache.active_model(session=session, data_dir=_data_dir())
    if loaded is None:
        raise _fail("没有已启用的派单模型：请先运行 xihu dispatch train 或 xihu dispatch activate")
    model, version = loaded
    unknown = Counter(label for r in rows if (label := r["label"].strip()) not in model.labels)
    if unknown:
        # still scored (as wrong answers), so the figures stay those of the whole file
        listed = "、".join(f"{label}（{n} 条）" for label, n in unknown.most_common())
        typer.secho(f"注意：以下类别不在当前模型中，计为分错：{listed}", err=True, fg=typer.colors.YELLOW)
    result = classifier.evaluate(model, rows)
    figures = {key: result[key] for key in EVALUATION_KEYS}
    if as_json:
        typer.echo(json.dumps(figures, ensure_ascii=False))
        return
    typer.echo(f"模型版本 (version): {version}    阈值 (threshold): {model.threshold:.4f}")
    typer.echo(f"样本数 (n): {figures['n']}")
    typer.echo(f"准确率 (accuracy): {figures['accuracy']:.4f}")
    typer.echo(f"宏平均F1 (macro_f1): {figures['macro_f1']:.4f}")
    typer.echo(f"自动派单率 (auto_rate): {figures['auto_rate']:.4f}")
    typer.echo(f"自动派单准确率 (auto_precision): {figures['auto_precision']:.4f}")
    typer.echo(f"单条耗时 (ms_per_appeal): {figures['ms_per_appeal']:.3f}")


@app.command()
def versions() -> None:
    """List the model versions, newest first."""
    from xihu.core import clock
    from xihu.dispatch import registry

    with _session() as session:
        rows = registry.list_versions(session=session, actor=_actor(), data_dir=_data_dir())
    if not rows:
        typer.echo("还没有模型版本 (no model versions yet)")
        return
    for v in rows:
        mark = "*" if v.active else " "
        f1 = "-" if v.macro_f1 is None else f"{v.macro_f1:.4f}"
        missing = "" if v.file_present else "  [文件缺失 file missing]"
        typer.echo(
            f"{mark} {v.id:>4}  {v.version}  {clock.fmt(v.created_at)}  n_train={v.n_train}  "
            f"macro_f1={f1}  threshold={v.threshold:.4f}  {v.note}{missing}"
        )


def _version_id(session: Session, version: str) -> int:
    from xihu.dispatch import registry

    for v in registry.list_versions(session=session, actor=_actor(), data_dir=_data_dir()):
        if v.version == version or str(v.id) == version:
            return v.id
    raise _fail(f"找不到模型版本 {version}")


@app.command("activate")
def activate_version(
    version: str = typer.Argument(..., help="版本号（如 m20261121-2130-ab12）或编号"),
    confirm: bool = typer.Option(False, "--confirm", help="指标不如当前版本时仍然启用（已核对）"),
) -> None:
    """Make a model version the active one (one worse than the active version only with --confirm)."""
    from xihu.dispatch import registry

    try:
        with _session() as session:
            done = registry.activate(
                session=session,
                actor=_actor(),
                version_id=_version_id(session, version),
                data_dir=_data_dir(),
                confirm=confirm,
            )
    except DomainError as exc:
        raise _fail(f"启用失败：{exc.message}") from exc
    typer.echo(f"已启用模型 {done.version} (activated)")


@app.command()
def rollback() -> None:
    """Re-activate the version that was active before the current one."""
    from xihu.dispatch import registry

    try:
        with _session() as session:
            done = registry.rollback(session=session, actor=_actor(), data_dir=_data_dir())
    except DomainError as exc:
        raise _fail(f"回滚失败：{exc.message}") from exc
    typer.echo(f"已回滚到模型 {done.version} (rolled back)")
