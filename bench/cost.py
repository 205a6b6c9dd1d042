"""Monthly cost of a playground VM, with and without the nightly stop, and with idle autostop for a stated
working pattern, next to the smallest Cloud Composer environment, from the public list prices in
bench/prices.toml (issues 5 and 16).

    .venv/bin/python bench/cost.py [--stop 21:00] [--start 08:00] [--days 5]
                                   [--autostop 60] [--sessions 2] [--session-hours 3]
The autostop pattern: on each working day the machine is used in SESSIONS stretches of SESSION-HOURS (tasks
running or an SSH session or tunnel open), started for the first (`playground start`, or the morning
schedule at the first one) and stopped by autostop AUTOSTOP minutes after each; the nightly stop stays the
backstop. The prices carry the date they were written down; the table prints it.
"""
from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

from common import Row
from rich.console import Console
from rich.table import Table

HOURS_PER_MONTH = 730  # Google's billing month
WEEKS_PER_MONTH = HOURS_PER_MONTH / 168


def hours(text: str) -> float:
    h, m = text.split(":")
    return int(h) + int(m) / 60


def autostop_hours(days: int, sessions: int, session_hours: float, autostop_min: int, stop: str, start: str) -> float:
    """Running hours a month with the working pattern and autostop: each session plus the idle minutes before
    the power-off, never more than the scheduled day."""
    per_day = min(sessions * (session_hours + autostop_min / 60), hours(stop) - hours(start))
    return days * per_day * WEEKS_PER_MONTH


def figures(stop: str = "21:00", start: str = "08:00", days: int = 5,
            prices: str = str(Path(__file__).with_name("prices.toml")),
            autostop: int = 60, sessions: int = 2, session_hours: float = 3) -> list[Row]:
    """The monthly totals as rows, for bench/run."""
    p = tomllib.loads(Path(prices).read_text())
    vm, disk, comp = p["vm"], p["disk"], p["composer"]
    disk_month = disk["size_gb"] * disk["per_gb_month"]
    up_hours = days * (hours(stop) - hours(start)) * WEEKS_PER_MONTH
    composer = HOURS_PER_MONTH * (comp["environment_fee_per_hour"] + comp["vcpus"] * comp["vcpu_per_hour"]
                                  + comp["memory_gb"] * comp["gb_memory_per_hour"]
                                  + comp["storage_gb"] * comp["gb_storage_per_hour"])
    cur = f"{p['currency']}/month, prices of {p['noted']}"
    auto_hours = autostop_hours(days, sessions, session_hours, autostop, stop, start)
    with_autostop = auto_hours * vm["per_hour"] + disk_month
    rows = [Row(f"cost: {vm['machine_type']} always on ({cur})", [HOURS_PER_MONTH * vm["per_hour"] + disk_month]),
            Row(f"cost: with the {stop} stop, {start} start, {days} days ({cur})",
                [up_hours * vm["per_hour"] + disk_month]),
            Row(f"cost: + autostop {autostop} min, {sessions} x {session_hours:g} h used a day ({cur})",
                [with_autostop]),
            Row(f"cost: {comp['what']} ({cur})", [composer]),
            Row("cost: Composer / playground with stop and autostop (x)", [composer / with_autostop], aim=10,
                higher_is_better=True)]
    seed = p.get("seed_base", {})
    if "per_hour" in seed:  # only a noted rate makes a figure
        rows.append(Row(f"cost: + {seed['what']}, with the stop ({cur})", [up_hours * seed["per_hour"]]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stop", default="21:00", help="nightly stop (the original set-up: 9 pm)")
    parser.add_argument("--start", default="08:00", help="morning start")
    parser.add_argument("--days", type=int, default=5, help="working days a week")
    parser.add_argument("--autostop", type=int, default=60, help="idle minutes before the power-off")
    parser.add_argument("--sessions", type=int, default=2, help="stretches of use a working day")
    parser.add_argument("--session-hours", type=float, default=3, help="hours of use in each")
    parser.add_argument("--prices", default=str(Path(__file__).with_name("prices.toml")))
    args = parser.parse_args()
    p = tomllib.loads(Path(args.prices).read_text())
    vm, disk, comp = p["vm"], p["disk"], p["composer"]

    disk_month = disk["size_gb"] * disk["per_gb_month"]
    always = HOURS_PER_MONTH * vm["per_hour"]
    up_hours = args.days * (hours(args.stop) - hours(args.start)) * WEEKS_PER_MONTH
    scheduled = up_hours * vm["per_hour"]
    auto_hours = autostop_hours(args.days, args.sessions, args.session_hours, args.autostop, args.stop, args.start)
    composer_hour = (comp["environment_fee_per_hour"] + comp["vcpus"] * comp["vcpu_per_hour"]
                     + comp["memory_gb"] * comp["gb_memory_per_hour"]
                     + comp["storage_gb"] * comp["gb_storage_per_hour"])
    composer = HOURS_PER_MONTH * composer_hour

    cur = p["currency"]
    table = Table("what", "running hours / month", "compute", "disk", "total / month", "vs Composer",
                  "Composer is",
                  title=f"Monthly cost, {p['region']} list prices noted {p['noted']} ({cur})",
                  caption="sources: " + ", ".join(x["source"] for x in (vm, disk, comp)))
    rows = [
        (f"playground {vm['machine_type']}, always on", HOURS_PER_MONTH, always, disk_month),
        (f"playground {vm['machine_type']}, stop {args.stop} / start {args.start}, {args.days} days",
         up_hours, scheduled, disk_month),
        (f"  + autostop {args.autostop} min, used {args.sessions} x {args.session_hours:g} h a day",
         auto_hours, auto_hours * vm["per_hour"], disk_month),
        (comp["what"], HOURS_PER_MONTH, composer, 0.0),
    ]
    for what, hrs, compute_cost, disk_cost in rows:
        total = compute_cost + disk_cost
        table.add_row(what, f"{hrs:.0f}", f"{compute_cost:,.2f}", f"{disk_cost:,.2f}", f"{total:,.2f}",
                      f"{total / composer:.0%}", f"{composer / total:.1f}x")
    console = Console(width=max(Console().width, 120))
    console.print(table)
    saved = always - scheduled
    seed = p.get("seed_base", {})
    if "per_hour" in seed:
        console.print(f"The seed profile adds {seed['what']}: {up_hours * seed['per_hour']:,.2f} {cur} a month "
                      f"with the stop, {HOURS_PER_MONTH * seed['per_hour']:,.2f} always on ({seed['source']}).")
    elif seed:
        console.print(f"The seed profile adds {seed['what']} for every running hour; its rate is not noted in "
                      f"bench/prices.toml yet ({seed['source']}).")
    console.print(f"The nightly stop saves {saved:,.2f} {cur} a month per playground "
                    f"({saved / (always + disk_month):.0%} of the always-on bill). Prices as noted on {p['noted']}; "
                  "re-check them on the source pages before quoting.")


if __name__ == "__main__":
    main()
