"""Load and compile rule packs: all-or-nothing, with file, line and rule id in every error."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cel
import yaml
from pydantic import ValidationError

from rules.model import Rule, RulePack
from rules.templates import placeholders
from streams.features import FEATURES


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a rule pack."""

    file: str
    line: int
    rule_id: str | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return (
            f"{where}: rule {self.rule_id}: {self.message}"
            if self.rule_id
            else (f"{where}: {self.message}")
        )


class RulePackError(Exception):
    """A rule pack is invalid; nothing was loaded."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True)
class CompiledRule:
    """A rule with its CEL programs compiled once and the features they read."""

    rule: Rule
    when: cel.Program
    resolve_when: cel.Program | None
    applies_to: cel.Program | None
    inputs: frozenset[str]
    source: str

    @property
    def id(self) -> str:
        """The rule id."""
        return self.rule.id

    @property
    def time_based(self) -> bool:
        """True if any input can change with time alone (needs sweeps)."""
        return any(FEATURES[n].changes_with_time for n in self.inputs)


@dataclass(frozen=True)
class RuleSet:
    """All compiled rules of a worker, in load order."""

    rules: tuple[CompiledRule, ...]
    inputs: frozenset[str] = field(init=False)
    time_inputs: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        all_inputs = frozenset().union(*(r.inputs for r in self.rules))
        object.__setattr__(self, "inputs", all_inputs)
        object.__setattr__(
            self, "time_inputs", frozenset(n for n in all_inputs if FEATURES[n].changes_with_time)
        )


def pack_files(paths: Iterable[Path]) -> list[Path]:
    """The YAML files named by ``paths`` (directories are searched for *.yaml, *.yml)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        else:
            files.append(path)
    return files


def load_rules(paths: Iterable[Path]) -> RuleSet:
    """Load, validate and compile every pack in ``paths``; raise RulePackError on any problem."""
    problems: list[Problem] = []
    compiled: list[CompiledRule] = []
    seen: dict[str, str] = {}
    files = pack_files(paths)
    if not files:
        raise RulePackError([Problem(str(p), 0, None, "no rule pack found") for p in paths])
    for file in files:
        for rule, line, rule_lines in _read_pack(file, problems):
            where = f"{file}:{line}"
            if rule.id in seen:
                problems.append(
                    Problem(
                        str(file), line, rule.id, f"duplicate rule id (first in {seen[rule.id]})"
                    )
                )
                continue
            seen[rule.id] = where
            result = _compile(rule, str(file), rule_lines, problems)
            if result is not None:
                compiled.append(result)
    if problems:
        raise RulePackError(problems)
    return RuleSet(tuple(compiled))


def _read_pack(file: Path, problems: list[Problem]) -> list[tuple[Rule, int, dict[str, int]]]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(Problem(str(file), 0, None, f"cannot read: {exc.strerror}"))
        return []
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        problems.append(Problem(str(file), line, None, f"YAML error: {exc}"))
        return []
    rules_node: Any = root
    if isinstance(data, dict) and isinstance(root, yaml.MappingNode):
        data = data.get("rules")
        rules_node = next((v for k, v in root.value if k.value == "rules"), None)
    if not isinstance(data, list) or not isinstance(rules_node, yaml.SequenceNode):
        problems.append(Problem(str(file), 1, None, "a rule pack is a YAML list of rules"))
        return []
    out: list[tuple[Rule, int, dict[str, int]]] = []
    for item, node in zip(data, rules_node.value, strict=True):
        line = node.start_mark.line + 1
        key_lines = (
            {k.value: k.start_mark.line + 1 for k, _ in node.value}
            if isinstance(node, yaml.MappingNode)
            else {}
        )
        rule_id = item.get("id") if isinstance(item, dict) else None
        try:
            out.append((RulePack(rules=[item]).rules[0], line, key_lines))
        except ValidationError as exc:
            for err in exc.errors():
                loc = [str(p) for p in err["loc"][2:]]
                key = loc[0] if loc else ""
                key_line = key_lines.get(key, line)
                field_name = ".".join(loc) or "rule"
                problems.append(
                    Problem(str(file), key_line, rule_id, f"{field_name}: {err['msg']}")
                )
    return out


def _compile(
    rule: Rule, file: str, key_lines: dict[str, int], problems: list[Problem]
) -> CompiledRule | None:
    programs: dict[str, cel.Program | None] = {}
    inputs: set[str] = set()
    start = len(problems)
    for key in ("when", "resolve_when", "applies_to"):
        source = getattr(rule, key)
        if source is None:
            programs[key] = None
            continue
        line = key_lines.get(key, 0)
        try:
            program = cel.compile(source)
        except ValueError as exc:
            first = str(exc).splitlines()
            problems.append(Problem(file, line, rule.id, f"{key}: CEL syntax error: {first[0]}"))
            continue
        unknown = sorted(set(program.variables()) - FEATURES.keys())
        if unknown:
            problems.append(
                Problem(file, line, rule.id, f"{key}: unknown variable(s) {', '.join(unknown)}")
            )
            continue
        programs[key] = program
        inputs.update(program.variables())
    templates = {"summary": rule.summary, "task": rule.task.title if rule.task else None}
    for key, template in templates.items():
        unknown_ph = sorted(placeholders(template or "") - FEATURES.keys())
        if unknown_ph:
            where = "summary" if key == "summary" else "task.title"
            problems.append(
                Problem(
                    file,
                    key_lines.get(key, 0),
                    rule.id,
                    f"{where}: unknown placeholder(s) {', '.join(unknown_ph)}",
                )
            )
    if len(problems) > start:
        return None
    when = programs["when"]
    assert when is not None
    return CompiledRule(
        rule=rule,
        when=when,
        resolve_when=programs["resolve_when"],
        applies_to=programs["applies_to"],
        inputs=frozenset(inputs),
        source=file,
    )
