"""What a reliability scenario reports, and the runner that turns scenarios into docs/reliability.md.

A scenario is a plain function ``(trials, seed, workdir) -> Outcome`` that injects one class of
fault or hostile input ``trials`` times and counts what survived and what data was lost. The same
function runs twice: with a few trials under pytest (the CI subset, in ``test_*.py`` next to it),
and with the full count under ``make chaos``, which writes the table between the markers in
docs/reliability.md. "Survived" means every promise held for that trial (only complete shards
visible, verify passes, byte-identical resume, a clear reason for every reject...); "lost" counts
input records or training samples that ended up neither written nor reported.
"""

from __future__ import annotations

import argparse
import importlib
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "docs" / "reliability.md"
BEGIN, END = "<!-- chaos:begin -->", "<!-- chaos:end -->"


@dataclass
class Outcome:
    fault: str  #: the table row: fault or input class, with where it was injected
    trials: int = 0
    survived: int = 0
    lost: int = 0  #: records or samples neither written nor in a rejects report
    failures: list[str] = field(default_factory=list)  #: one line per trial that did not survive: why
    seconds: float = 0.0

    def trial(self, survived: bool, why: str = "", lost: int = 0) -> None:
        self.trials += 1
        self.survived += survived
        self.lost += lost
        if not survived or lost:
            self.failures.append(f"trial {self.trials}: {why or 'failed'} (lost {lost})")

    def check(self) -> None:
        """For pytest: every trial survived and nothing was lost, or fail listing why."""
        assert self.trials > 0, f"{self.fault}: no trials ran"
        assert self.survived == self.trials and self.lost == 0, "\n".join([self.fault, *self.failures])


@dataclass(frozen=True)
class Scenario:
    name: str  #: command-line name, e.g. "build-sigkill"
    run: Callable[[int, int, Path], Outcome | list[Outcome]]  #: (trials, seed, workdir)
    full_trials: int  #: what ``make chaos`` runs
    ci_trials: int  #: what the pytest subset runs


#: modules under tests/reliability that define ``SCENARIOS``; make chaos runs them in this order
MODULES = ("build_faults", "training_faults", "prefect_faults", "hostile_input", "security", "scale")


def scenarios() -> list[Scenario]:
    found = []
    for module in MODULES:
        try:
            found += importlib.import_module(f"tests.reliability.{module}").SCENARIOS
        except ModuleNotFoundError as error:
            if error.name != f"tests.reliability.{module}":
                raise
    return found


def table(outcomes: list[Outcome]) -> str:
    rows = ["| fault or input class | trials | survived | data lost | time (s) |", "|---|---:|---:|---:|---:|"]
    rows += [f"| {o.fault} | {o.trials} | {o.survived} | {o.lost} | {o.seconds:.0f} |" for o in outcomes]
    return "\n".join(rows)


def write_report(outcomes: list[Outcome], command: str) -> None:
    """Replace the table between the markers in docs/reliability.md (the prose around it is kept)."""
    text = REPORT.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{REPORT}: the markers {BEGIN} and {END} are missing")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    failures = [f"- {o.fault}: {line}" for o in outcomes for line in o.failures]
    body = "\n".join([BEGIN, f"Produced by `{command}` on {stamp}.", "", table(outcomes), "",
                      *(["Trials that did not survive:", "", *failures, ""] if failures else []), END])
    REPORT.write_text(re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: body, text, flags=re.S))


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the reliability scenarios and write docs/reliability.md.")
    parser.add_argument("names", nargs="*", help="scenarios to run (default: all)")
    parser.add_argument("--ci", action="store_true", help="the CI trial counts instead of the full ones")
    parser.add_argument("--seed", type=int, default=20261203)
    parser.add_argument("--no-report", action="store_true", help="print the table, leave docs/ alone")
    args = parser.parse_args()
    chosen = [s for s in scenarios() if not args.names or s.name in args.names]
    if unknown := set(args.names) - {s.name for s in chosen}:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; known: {[s.name for s in scenarios()]}")
    outcomes: list[Outcome] = []
    for scenario in chosen:
        trials = scenario.ci_trials if args.ci else scenario.full_trials
        print(f"== {scenario.name}: {trials} trials", flush=True)
        start = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"chaos-{scenario.name}-") as workdir:
            result = scenario.run(trials, args.seed, Path(workdir))
        for outcome in result if isinstance(result, list) else [result]:
            outcome.seconds = outcome.seconds or time.monotonic() - start
            print(f"   {outcome.fault}: {outcome.survived}/{outcome.trials} survived, {outcome.lost} lost", flush=True)
            for line in outcome.failures:
                print(f"     {line}", flush=True)
            outcomes.append(outcome)
    print(table(outcomes))
    if not args.no_report and not args.names:
        write_report(outcomes, "make chaos" if not args.ci else "python -m tests.reliability.trials --ci")
    if any(o.survived < o.trials or o.lost for o in outcomes):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
