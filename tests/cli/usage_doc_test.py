"""docs/usage.md documents exactly the flags each `iotinfer` subcommand has.

The binary is the truth: every subcommand is found from `iotinfer --help` (and nested ones,
such as `report latency`, from their parent's `--help`), and its long flags from its own
`--help`. The page's convention, stated at its top: a command's section is headed
``## `iotinfer NAME` `` and runs to the next `##` heading; its flags are in tables whose header
row starts with `| flag |`, each flag in backticks in the first column. Fails, naming command
and flag, when
- a subcommand has no section, or a section names a command the binary does not have;
- a flag is missing from its command's flag tables;
- a flag table names a flag its command does not have;
- a command section's text mentions a `--flag` that no subcommand has (a renamed or removed
  flag left behind in prose).
`--help` and `--version` are left out.

Standard library only. Run by ctest (`docs.usage`, label `unit`):
  usage_doc_test.py --iotinfer build/iotinfer --doc docs/usage.md
"""

import argparse
import re
import subprocess
import sys

IGNORED = {"--help", "--version"}
# A long flag: two dashes, then a letter, then letters, digits and dashes.
FLAG = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")
SECTION = re.compile(r"^## `iotinfer ([a-z][a-z0-9 -]*)`\s*$")


def run_help(iotinfer, path):
    """`iotinfer PATH... --help` as text; exits the test when the binary cannot answer."""
    command = [iotinfer, *path, "--help"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as error:
        sys.exit(f"usage_doc_test: cannot run {' '.join(command)}: {error}")
    if done.returncode != 0:
        sys.exit(f"usage_doc_test: {' '.join(command)} exited {done.returncode}:\n{done.stderr}")
    return done.stdout


def parse_help(text):
    """(long flags, subcommand names) of one CLI11 help page.

    CLI11 writes each option's names at a two-space indent (`  -h,--help`, `  --store TEXT=...`)
    and wraps long descriptions onto lines indented further, which may mention other flags:
    only the names at the option's own indent count. Subcommands are listed the same way under
    `Subcommands:`.
    """
    flags, subcommands, part = set(), [], None
    for line in text.splitlines():
        if line and not line[0].isspace():
            part = line.rstrip(":") if line.endswith(":") else None
            continue
        if not line.startswith("  ") or line.startswith("   "):
            continue
        names = line.split()[0]
        if part == "Options":
            flags.update(name for name in names.split(",") if name.startswith("--"))
        elif part == "Subcommands":
            subcommands.append(names)
    return flags - IGNORED, subcommands


def discover(iotinfer):
    """({command path ("report latency"): its long flags}, {paths of groups}).

    A command that runs something needs a section; a group (a command with subcommands of its
    own, such as `report`) needs one only when it has flags of its own, but may have one."""
    commands, groups = {}, set()
    pending = [[]]
    while pending:
        path = pending.pop()
        flags, subcommands = parse_help(run_help(iotinfer, path))
        if path:
            if flags or not subcommands:
                commands[" ".join(path)] = flags
            else:
                groups.add(" ".join(path))
        pending.extend(path + [name] for name in subcommands)
    return commands, groups


def table_rows(lines):
    """The first cells of the rows of every `| flag | ...` table in `lines`."""
    cells, in_table = [], False
    for line in lines:
        if not line.startswith("|"):
            in_table = False
            continue
        first = line.strip("|").split("|")[0].strip()
        if not in_table:
            in_table = first == "flag"  # the header row
            continue
        if set(first) <= set("-: "):  # the separator row
            continue
        cells.append(first)
    return cells


def parse_doc(text):
    """{command path: (flags in its flag tables, flags mentioned elsewhere in its section)}."""
    sections, current, body = {}, None, []

    def close():
        if current is not None:
            tabled = set()
            for cell in table_rows(body):
                tabled.update(FLAG.findall(cell))
            prose = {flag for line in body if not line.startswith("|") for flag in FLAG.findall(line)}
            sections[current] = (tabled, prose)

    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if not in_code and line.startswith("## "):
            close()
            match = SECTION.match(line)
            current, body = (match.group(1).strip() if match else None), []
            continue
        # Code blocks are examples: their flags are checked as prose, never as a table.
        body.append(" " + line if in_code else line)
    close()
    return sections


def check(commands, groups, sections):
    """Every problem found, one line each, or an empty list."""
    problems = []
    every_flag = set().union(*commands.values()) | IGNORED
    commands = {**{group: set() for group in groups if group in sections}, **commands}
    for command in sorted(commands):
        if command not in sections:
            problems.append(f"iotinfer {command}: no section headed '## `iotinfer {command}`'")
            continue
        tabled, prose = sections[command]
        for flag in sorted(commands[command] - tabled):
            problems.append(f"iotinfer {command}: {flag} is missing from its flag table")
        for flag in sorted(tabled - commands[command] - IGNORED):
            problems.append(f"iotinfer {command}: the flag table documents {flag}, which the command does not have")
        for flag in sorted(prose - every_flag):
            problems.append(f"iotinfer {command}: the section mentions {flag}, which no subcommand has")
    for command in sorted(set(sections) - set(commands)):
        problems.append(f"iotinfer {command}: documented, but the binary has no such command")
    return problems


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iotinfer", required=True, help="the iotinfer binary")
    parser.add_argument("--doc", required=True, help="docs/usage.md")
    args = parser.parse_args()
    commands, groups = discover(args.iotinfer)
    if not commands:
        sys.exit(f"usage_doc_test: found no subcommands in {args.iotinfer} --help")
    with open(args.doc, encoding="utf-8") as f:
        sections = parse_doc(f.read())
    problems = check(commands, groups, sections)
    if problems:
        print(f"{args.doc} does not match {args.iotinfer}:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    flags = sum(len(f) for f in commands.values())
    print(f"{args.doc}: {len(commands)} commands and their {flags} flags documented, no others")
    return 0


if __name__ == "__main__":
    sys.exit(main())
