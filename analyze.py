"""Turn sweep folders into tables, figures and a report.

    python analyze.py                                  # the newest sweep under outputs/multirun/
    python analyze.py outputs/multirun/2026-11-22_14-18-13 other/sweep
    python analyze.py SWEEP activation=relu,tanh depth=50   # keep only these runs (also filter.KEY=...)
    python analyze.py SWEEP init.std=0.3 'optimizer.betas=[0.5,0.9]'   # floats to 1e-9, lists by element
    python analyze.py SWEEP --init he_normal --format pdf --out paper/figs

Writes runs.csv, configs.csv, epochs.csv, layers.csv (and jacobian.csv, steps.csv,
distributions.csv when jobs wrote them), figures/ and report.md + report.html into PATH/analysis/
(the common parent of several PATHs; PATH/analysis_<filters>/ for a filtered analysis) unless
--out is given. Mean-field predictions that jobs recorded appear beside the measurements in
runs.csv, the Theory figures and the report's Theory section.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from pathlib import Path

log = logging.getLogger("analyze")


def split_values(text: str) -> list[str]:
    """``a,[0.5,0.9],'x=1,y=2',b`` -> ["a", "[0.5,0.9]", "x=1,y=2", "b"]: commas inside brackets
    belong to a list value, commas inside quotes to the quoted value (a job folder's name), as in
    Hydra's overrides. Raises ValueError for a quote left open."""
    values, depth, quote, current = [], 0, "", ""
    for char in text:
        if quote:
            quote = "" if char == quote else quote
            current += char if quote else ""
            continue
        if char in "'\"":
            quote = char
            continue
        depth += (char in "[(") - (char in "])")
        if char == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += char
    if quote:
        raise ValueError(f"{text}: the quote {quote} is not closed; valid: a value in matching quotes, "
                         "such as job=\"'a=1,b=2'\"")
    return values + [current]


FORMATS = ("png", "pdf", "svg")
# the options taking one or more values (argparse's nargs="+"), with what is one of their values
MULTI_VALUE = {"--format": lambda token: token in FORMATS, "--detail-depth": lambda token: token.isdigit()}


def _multi_values_last(argv: list[str]) -> list[str]:
    """``argv`` with each filter (KEY=VALUES) or existing folder that follows a multi-value option,
    and is none of its values, moved before it: argparse takes every token after ``--detail-depth``
    as a depth, so ``--detail-depth 5 50 depth=5,50`` stopped on 'invalid int value: depth=5,50'.
    A value stays a value even where a folder of that name exists (``--detail-depth 5`` beside ./5)."""
    items, rest, value_of = [], [], None
    for token in argv:
        if token.startswith("-"):
            value_of = MULTI_VALUE.get(token)
            rest.append(token)
        elif value_of is not None and not value_of(token) and ("=" in token or _exists(token)):
            items.append(token)
        else:
            rest.append(token)
    return items + rest


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("items", nargs="*", metavar="PATH|KEY=VALUES",
                   help="sweep, job or parent folders (searched recursively); KEY=V1,V2 or filter.KEY=... "
                        "keeps runs whose runs.csv column KEY is one of the values (numbers to a relative 1e-9, "
                        "lists such as [0.5,0.9] element by element; quote a value with commas: job=\"'a=1,b=2'\")")
    for key in ("activation", "init", "depth"):
        p.add_argument(f"--{key}", action="append", help=f"same as {key}=VALUES")
    p.add_argument("-o", "--out", type=_folder, help="output folder (default PATH/analysis)")
    p.add_argument("--format", nargs="+", default=["png"], choices=FORMATS,
                   help="figure formats besides the PNG the report embeds")
    p.add_argument("--detail-depth", type=int, nargs="+",
                   help="depths for the per-layer figures and heatmaps (default: the deepest)")
    p.add_argument("--margin", type=float, default=0.1,
                   help="a run is trainable if final test accuracy > chance + margin, in [0, 1) (default 0.1)")
    args = p.parse_intermixed_args(_multi_values_last(argv))
    if not 0 <= args.margin < 1:
        p.error(f"--margin {args.margin}: valid: a number in [0, 1) (an accuracy above chance)")
    if args.detail_depth and min(args.detail_depth) < 1:
        p.error(f"--detail-depth {' '.join(map(str, args.detail_depth))}: valid: depths >= 1")
    args.paths, args.filters = [], {}
    given: dict[str, tuple[str, str]] = {}  # key -> (as written, its values)

    def add(key: str, values: str, spelled: str) -> None:
        """One filter; a key given twice would keep only its last values (depth=8 depth=3: depth 3)."""
        if key in given:
            first, earlier = given[key]
            both = ",".join(dict.fromkeys(split_values(earlier) + split_values(values)))
            raise ValueError(f"{first} and {spelled}: {key} filtered twice; valid: its values at once, {key}={both}")
        given[key] = (spelled, values)
        args.filters[key] = split_values(values)

    try:
        for item in args.items:
            _folder(item)  # "$SWEEP" left empty would analyse (and write into) the working directory
            key, sep, values = item.partition("=")
            if _exists(item) or not sep or "/" in key:
                args.paths.append(Path(item))
            else:
                add(key.removeprefix("filter."), values, item)
        for key in ("activation", "init", "depth"):
            for values in getattr(args, key) or []:  # --depth 1 --depth 3: twice, as depth=1 depth=3
                add(key, values, f"--{key} {values}")
    except (ValueError, argparse.ArgumentTypeError) as err:
        p.error(str(err))
    if args.detail_depth:
        args.detail_depth = list(dict.fromkeys(args.detail_depth))
    return args


def _folder(text: str) -> Path:
    """A folder argument; an empty one (``-o ""``, a shell variable left unset) is refused: as a
    path it is the working directory, which the analysis would then search or fill."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty folder name ('') would be the working directory; "
                                         "valid: a folder path")
    return Path(text)


def _skipped(skipped: list) -> str:
    """Why every job folder found was skipped, in a few words: the first reasons, then a count."""
    shown = "; ".join(f"{s.job if s.job not in ('', '.') else 'the folder'}: {s.reason}" for s in skipped[:2])
    more = f"; and {len(skipped) - 2} more (see the warnings above)" if len(skipped) > 2 else ""
    return f"every job folder found was skipped ({shown}{more})"


def _exists(item: str) -> bool:
    """Whether ``item`` names a file or folder (a filter longer than a file name can be is none)."""
    try:
        return Path(item).exists()
    except OSError:
        return False


def main(argv: list[str]) -> int:
    logging.basicConfig(format="%(levelname)s: %(message)s")
    log.setLevel(logging.INFO)
    args = parse(argv)
    from initlab.analysis import report  # after parsing: --help stays instant
    from initlab.analysis import tables as analysis
    from initlab.analysis.filters import output_name
    from initlab.analysis.figures import Plotter, remove_stale

    try:
        paths = args.paths or [analysis.newest_sweep()]
        missing = [str(p) for p in paths if not p.is_dir()]
        if missing:
            raise FileNotFoundError(f"no such folder: {', '.join(missing)}")
        tables = analysis.load(paths, args.filters, args.margin)
    except (FileNotFoundError, KeyError) as err:
        print(f"error: {err.args[0]}", file=sys.stderr)
        return 1
    if tables.runs.empty:
        why = _skipped(tables.skipped) if tables.skipped else "no job folders"  # a filter that keeps none raised
        print(f"error: nothing to analyze in {', '.join(map(str, paths))}: {why}", file=sys.stderr)
        return 1
    depths = sorted(tables.runs["depth"].unique())
    absent = [d for d in args.detail_depth or [] if d not in depths]
    if absent:
        print(f"error: --detail-depth {' '.join(map(str, absent))}: no run has that depth; valid: "
              f"{', '.join(map(str, depths))}", file=sys.stderr)
        return 1
    out = Path(os.path.realpath(args.out or tables.root / output_name(args.filters)))  # JOB/sub/.. is JOB
    if analysis.is_job(out) or ".hydra" in out.parts:
        print(f"error: --out {out} is a job folder or its .hydra/: the tables would replace the job's own records; "
              f"valid: a folder that holds no job's records", file=sys.stderr)
        return 1
    from initlab.records import unwritable

    if refusal := unwritable("--out", str(out)):  # a file of that name, a read-only sweep: not a traceback
        print(f"error: {refusal}", file=sys.stderr)
        return 1
    out.mkdir(parents=True, exist_ok=True)
    analysis.as_written(tables.runs).to_csv(out / "runs.csv", index=False)
    report.configurations(tables).to_csv(out / "configs.csv", index=False)
    tables.epochs.to_csv(out / "epochs.csv", index=False)
    tables.layers.to_csv(out / "layers.csv", index=False)
    for name in ("jacobian", "steps", "distributions"):
        if getattr(tables, name) is not None:
            getattr(tables, name).to_csv(out / f"{name}.csv", index=False)
    plotter = Plotter(tables, out, tuple(args.format), args.detail_depth)
    figures = plotter.all()
    remove_stale(plotter.dir, plotter.written)
    command = shlex.join(["python", "analyze.py", *argv])
    html = report.write(tables, figures, out, [str(p) for p in paths], command, plotter.not_drawn)
    log.info("%d runs, %d figures (%d not drawn), %d skipped job(s) -> %s", len(tables.runs), len(figures),
             len(plotter.not_drawn), len(tables.skipped), html)
    return 0


INTERRUPTED = "stopped (Ctrl-C): the analysis folder may hold old and new files side by side; the same command writes it again"



def _stop(signum: int, frame: object) -> None:
    """Ctrl-C: the line and exit 130 at once. A KeyboardInterrupt printed the traceback of whatever
    was loading or drawing, and one raised inside a callback Python runs for itself (a weak
    reference's) is only reported, the analysis going on to exit 0."""
    sys.stdout.flush()
    print(INTERRUPTED, file=sys.stderr, flush=True)
    os._exit(130)


if __name__ == "__main__":
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # a background job's stays ignored
        signal.signal(signal.SIGINT, _stop)
    sys.exit(main(sys.argv[1:]))
