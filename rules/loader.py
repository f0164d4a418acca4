"""Load and compile rule packs: all-or-nothing, with file, line and rule id in every error."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import cel
import yaml
from pydantic import ValidationError

from rules.model import ParamValue, Rule, RulePack
from rules.scoring import NOT_READABLE, CompiledFactor, CompiledScoring
from rules.scoring_model import Scoring
from rules.templates import placeholders
from streams.features import CATALOGUE_VERSION, FEATURES


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
    # feature -> the integer values at which a comparison in the rule flips (see thresholds())
    thresholds: dict[str, frozenset[int]] = field(default_factory=dict)

    @cached_property
    def id(self) -> str:
        """The rule id."""
        return self.rule.id

    @cached_property
    def time_based(self) -> bool:
        """True if any input can change with time alone (needs sweeps)."""
        return any(FEATURES[n].changes_with_time for n in self.inputs)

    @cached_property
    def static_guard(self) -> cel.Program | None:
        """``applies_to`` if time alone cannot change it: while false, no deadline is needed."""
        if self.applies_to is None:
            return None
        names = self.applies_to.variables()
        return None if any(FEATURES[n].changes_with_time for n in names) else self.applies_to

    @cached_property
    def reads_alerts(self) -> bool:
        """True if an input depends on the customer's other alerts (evaluated after them)."""
        return any("alerts" in FEATURES[n].depends_on for n in self.inputs)


@dataclass(frozen=True)
class RuleSet:
    """All compiled rules of a worker, in evaluation order.

    Inhibiting rules come before the rules they inhibit, and rules that read other alerts
    come last, so one evaluation pass sees the alerts it depends on.
    """

    rules: tuple[CompiledRule, ...]
    # 8 bytes identifying the packs' text: stored deadlines computed by other rules are stale
    fingerprint: bytes = b"\0" * 8
    scoring: CompiledScoring | None = None
    inputs: frozenset[str] = field(init=False)
    time_inputs: frozenset[str] = field(init=False)
    inhibited_by: dict[str, tuple[str, ...]] = field(init=False)

    def __post_init__(self) -> None:
        all_inputs = frozenset().union(*(r.inputs for r in self.rules))
        time_inputs = frozenset(n for n in all_inputs if FEATURES[n].changes_with_time)
        inhibited_by: dict[str, list[str]] = {}
        for r in self.rules:
            for target in r.rule.inhibits:
                inhibited_by.setdefault(target, []).append(r.id)
        object.__setattr__(self, "rules", _evaluation_order(self.rules))
        object.__setattr__(self, "inputs", all_inputs)
        object.__setattr__(self, "time_inputs", time_inputs)
        object.__setattr__(self, "inhibited_by", {k: tuple(v) for k, v in inhibited_by.items()})


def _evaluation_order(rules: tuple[CompiledRule, ...]) -> tuple[CompiledRule, ...]:
    by_id = {r.id: r for r in rules}
    depth: dict[str, int] = {}

    def depth_of(rule_id: str, seen: frozenset[str] = frozenset()) -> int:
        if rule_id not in depth:
            parents = [r.id for r in rules if rule_id in r.rule.inhibits and r.id not in seen]
            depth[rule_id] = 1 + max((depth_of(p, seen | {rule_id}) for p in parents), default=-1)
        return depth[rule_id]

    return tuple(sorted(rules, key=lambda r: (by_id[r.id].reads_alerts, depth_of(r.id))))


_OPS = r"(>=|<=|==|!=|>|<)"
_INT = r"(-?\d+)"
_BEFORE = r"(?:^|(?<=[(&|!,?:]))\s*"  # an operand starts here: not `x + 14 >= …`
_AFTER = r"\s*(?=$|[)&|,?:])"  # and ends here: not `… >= 14 + x`


def thresholds(source: str, name: str, counts_down: bool = False) -> frozenset[int] | None:
    """Values of ``name`` at which the comparisons in ``source`` flip, if it is only compared.

    ``days_since_last_login >= 14`` flips when the value reaches 14; ``x > 14`` at 15; for a
    counter that ``counts_down`` (days to a date), ``x <= 90`` flips at 90, ``x >= 0`` at -1. None
    when ``name`` also appears in any other form (arithmetic, a comparison with another
    variable): then only the feature's own change times are safe wake-up times.
    """
    occurrences = len(re.findall(rf"\b{name}\b", source))
    found: set[int] = set()
    matched = 0
    for match in re.finditer(rf"{_BEFORE}\b{name}\s*{_OPS}\s*{_INT}{_AFTER}", source):
        found |= _flips(match.group(1), int(match.group(2)))
        matched += 1
    for match in re.finditer(rf"{_BEFORE}{_INT}\s*{_OPS}\s*{name}\b{_AFTER}", source):
        found |= _flips(_MIRROR[match.group(2)], int(match.group(1)))
        matched += 1
    if counts_down:  # the value that makes a comparison flip is one lower going down
        found = {v - 1 for v in found}
    return frozenset(found) if matched == occurrences else None


_MIRROR = {">=": "<=", "<=": ">=", ">": "<", "<": ">", "==": "==", "!=": "!="}


def _flips(op: str, value: int) -> set[int]:
    if op in (">=", "<"):
        return {value}
    if op in (">", "<="):
        return {value + 1}
    return {value, value + 1}


DEFAULT_SCORING = Path(__file__).resolve().parent / "packs" / "scoring.yaml"
"""The built-in tiers, health score and lifecycle stages, used when no pack defines them."""
SCORING_KEYS = ("tiers", "at_risk", "health", "lifecycle")


def pack_files(paths: Iterable[Path]) -> list[Path]:
    """The YAML files named by ``paths`` (directories are searched for *.yaml, *.yml)."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        else:
            files.append(path)
    return files


Overrides = Mapping[str, Mapping[str, ParamValue]]
"""Parameter values replacing rules' defaults: rule id -> param name -> value."""


def load_rules(
    paths: Iterable[Path], default_scoring: bool = True, params: Overrides | None = None
) -> RuleSet:
    """Load, validate and compile every pack in ``paths``; raise RulePackError on any problem.

    Scoring (tiers, health, lifecycle) comes from the one pack file that defines it, or from
    the built-in :data:`DEFAULT_SCORING` when none does (none with ``default_scoring=False``).
    ``params`` replaces declared parameter defaults (rule id -> name -> value); a rule or
    parameter it names that does not exist, or a value of another type, is a problem too.
    """
    problems: list[Problem] = []
    overrides = {rule_id: dict(values) for rule_id, values in (params or {}).items()}
    compiled: list[CompiledRule] = []
    seen: dict[str, str] = {}
    lines: dict[str, tuple[str, int]] = {}
    paths = list(paths)
    files = pack_files(paths)
    if not files:
        raise RulePackError([Problem(str(p), 0, None, "no rule pack found") for p in paths])
    scorings: list[tuple[Path, Scoring, Any]] = []
    for file in files:
        rules, scoring = _read_pack(file, problems)
        if scoring is not None:
            scorings.append((file, *scoring))
        for rule, line, rule_lines in rules:
            where = f"{file}:{line}"
            if rule.id in seen:
                problems.append(
                    Problem(
                        str(file), line, rule.id, f"duplicate rule id (first in {seen[rule.id]})"
                    )
                )
                continue
            seen[rule.id] = where
            if rule.id in overrides:
                rule = _override(rule, overrides.pop(rule.id), str(file), line, problems)
            result = _compile(rule, str(file), rule_lines, problems)
            if result is not None:
                compiled.append(result)
                lines[rule.id] = (str(file), rule_lines.get("inhibits", line))
    for rule_id in sorted(overrides):
        problems.append(Problem("--param", 0, rule_id, "no such rule to set parameters of"))
    _check_inhibits([c.rule for c in compiled], lines, problems)
    if not scorings and not problems and default_scoring:
        _, scoring = _read_pack(DEFAULT_SCORING, problems)
        if scoring is not None:
            scorings.append((DEFAULT_SCORING, *scoring))
    for file, _, root in scorings[1:]:
        problems.append(
            Problem(
                str(file),
                root.start_mark.line + 1,
                None,
                f"scoring is already defined in {scorings[0][0]} (one file defines it)",
            )
        )
    compiled_scoring = (
        compile_scoring(scorings[0][1], str(scorings[0][0]), scorings[0][2], problems)
        if scorings
        else None
    )
    if problems:
        raise RulePackError(sorted(problems, key=lambda p: (p.file, p.line)))
    digest = hashlib.blake2b(CATALOGUE_VERSION.encode(), digest_size=8)
    for done in compiled:
        # rules without params hash as before params existed (stored deadlines stay valid)
        exclude = None if done.rule.params else {"params"}
        digest.update(done.rule.model_dump_json(exclude=exclude).encode())
    if compiled_scoring is not None:
        digest.update(compiled_scoring.spec.model_dump_json().encode())
    return RuleSet(tuple(compiled), digest.digest(), compiled_scoring)


def _check_inhibits(
    rules: list[Rule], lines: dict[str, tuple[str, int]], problems: list[Problem]
) -> None:
    known = {r.id for r in rules}
    for rule in rules:
        file, line = lines[rule.id]
        for target in rule.inhibits:
            if target == rule.id:
                problems.append(
                    Problem(file, line, rule.id, "inhibits: a rule cannot inhibit itself")
                )
            elif target not in known:
                problems.append(Problem(file, line, rule.id, f"inhibits: unknown rule {target!r}"))
    graph = {r.id: [t for t in r.inhibits if t in known and t != r.id] for r in rules}
    for start in graph:
        path = _cycle_from(start, graph)
        if path and path[0] == min(path):  # report each cycle once
            file, line = lines[start]
            problems.append(
                Problem(file, line, start, f"inhibits: cycle {' -> '.join([*path, path[0]])}")
            )


def _cycle_from(start: str, graph: dict[str, list[str]]) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    while stack:
        node, path = stack.pop()
        for nxt in graph[node]:
            if nxt == start:
                return path
            if nxt not in path:
                stack.append((nxt, [*path, nxt]))
    return None


def _read_pack(
    file: Path, problems: list[Problem]
) -> tuple[list[tuple[Rule, int, dict[str, int]]], tuple[Scoring, Any] | None]:
    """The rules of a pack file and its scoring definitions (with the file's YAML node)."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(Problem(str(file), 0, None, f"cannot read: {exc.strerror}"))
        return [], None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        problems.append(Problem(str(file), line, None, f"YAML error: {exc}"))
        return [], None
    rules_node: Any = root
    scoring = None
    if isinstance(data, dict) and isinstance(root, yaml.MappingNode):
        if any(k in data for k in SCORING_KEYS):
            scoring = _read_scoring(file, data, root, problems)
            if "rules" not in data:
                return [], scoring
        data = data.get("rules")
        rules_node = next((v for k, v in root.value if k.value == "rules"), None)
    if not isinstance(data, list) or not isinstance(rules_node, yaml.SequenceNode):
        problems.append(Problem(str(file), 1, None, "a rule pack is a YAML list of rules"))
        return [], scoring
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
    return out, scoring


def _line_at(root: Any, path: Sequence[str | int]) -> int:
    """1-based line of the deepest YAML node found along ``path`` (keys and list indexes);
    a path ending in a key gives the key's line."""
    node = root
    for i, step in enumerate(path):
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if k.value == str(step)), None)
            if found is None:
                break
            last = i == len(path) - 1
            node = found[0] if last or isinstance(found[1], yaml.ScalarNode) else found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int):
            if step >= len(node.value):
                break
            node = node.value[step]
        else:
            break
    return int(node.start_mark.line) + 1


def _read_scoring(
    file: Path, data: dict[str, Any], root: Any, problems: list[Problem]
) -> tuple[Scoring, Any] | None:
    try:
        return Scoring.model_validate({k: data[k] for k in SCORING_KEYS if k in data}), root
    except ValidationError as exc:
        for err in exc.errors():
            loc = [p for p in err["loc"] if not isinstance(p, str) or not p.startswith("function")]
            where = ".".join(str(p) for p in loc) or "scoring"
            problems.append(Problem(str(file), _line_at(root, loc), None, f"{where}: {err['msg']}"))
        return None


def compile_scoring(
    spec: Scoring, file: str, root: Any, problems: list[Problem]
) -> CompiledScoring | None:
    """Compile and check scoring definitions; problems go to ``problems``."""
    start = len(problems)

    def program(source: str, path: list[str | int], section: str, kind: str) -> Any:
        line = _line_at(root, path)
        where = ".".join(str(p) for p in path)
        try:
            compiled = cel.compile(source)
        except ValueError as exc:
            first = str(exc).splitlines()[0]
            problems.append(Problem(file, line, None, f"{where}: CEL syntax error: {first}"))
            return None
        names = set(compiled.variables())
        unknown = sorted(names - FEATURES.keys())
        if unknown:
            problems.append(
                Problem(file, line, None, f"{where}: unknown variable(s) {', '.join(unknown)}")
            )
            return None
        alerts = sorted(n for n in names if "alerts" in FEATURES[n].depends_on)
        if alerts and section != "at_risk":
            problems.append(
                Problem(
                    file,
                    line,
                    None,
                    f"{where}: cannot read {', '.join(alerts)} (alerts change after scoring; "
                    "read them in at_risk or in a rule)",
                )
            )
            return None
        later = sorted(names & NOT_READABLE[section])
        if later:
            problems.append(
                Problem(
                    file,
                    line,
                    None,
                    f"{where}: cannot read {', '.join(later)} (computed after {section})",
                )
            )
            return None
        error = type_check(compiled, want=kind)
        if error:
            problems.append(Problem(file, line, None, f"{where}: {error}"))
            return None
        return compiled

    def ordered(items: list[Any], section: str) -> tuple[tuple[str, Any], ...]:
        out = []
        ids: set[str] = set()
        for i, item in enumerate(items):
            last = i == len(items) - 1
            if item.id in ids:
                problems.append(
                    Problem(
                        file,
                        _line_at(root, [section, i]),
                        None,
                        f"{section}: duplicate id {item.id!r}",
                    )
                )
            ids.add(item.id)
            if last and item.when is not None:
                problems.append(
                    Problem(
                        file,
                        _line_at(root, [section, i, "when"]),
                        None,
                        f"{section}.{i}: the last entry ({item.id}) is the fallback and takes "
                        "no `when`",
                    )
                )
            elif not last and item.when is None:
                problems.append(
                    Problem(
                        file,
                        _line_at(root, [section, i]),
                        None,
                        f"{section}.{i}: `when` is required except on the last entry",
                    )
                )
            cond = (
                program(item.when, [section, i, "when"], section, "bool")
                if item.when is not None
                else None
            )
            out.append((item.id, cond))
        return tuple(out)

    tiers = ordered(spec.tiers, "tiers")
    stages = ordered(spec.lifecycle, "lifecycle")
    health = spec.health
    factors: list[CompiledFactor] = []
    factor_ids: set[str] = set()
    for i, factor in enumerate(health.factors):
        path: list[str | int] = ["health", "factors", i]
        if factor.id in factor_ids:
            problems.append(
                Problem(file, _line_at(root, path), None, f"health: duplicate factor {factor.id!r}")
            )
        factor_ids.add(factor.id)
        for policy in (factor.missing,):
            if isinstance(policy, int) and not 0 <= policy <= 100:
                problems.append(
                    Problem(
                        file,
                        _line_at(root, [*path, "missing"]),
                        None,
                        f"health.factors.{i}.missing: points must be 0-100",
                    )
                )
        value = program(factor.value, [*path, "value"], "health", "number")
        missing_when = (
            program(factor.missing_when, [*path, "missing_when"], "health", "bool")
            if factor.missing_when
            else None
        )
        bare = factor.value.strip()
        if value is not None:
            factors.append(
                CompiledFactor(factor, value, missing_when, bare if bare in FEATURES else None)
            )
    if isinstance(health.missing, int) and not 0 <= health.missing <= 100:
        problems.append(
            Problem(
                file,
                _line_at(root, ["health", "missing"]),
                None,
                "health.missing: points must be 0-100",
            )
        )
    _check_weights(
        {f.id: f.weight for f in health.factors},
        "health.factors",
        file,
        _line_at(root, ["health", "factors"]),
        factor_ids,
        problems,
    )
    profiles = []
    for i, profile in enumerate(health.profiles):
        path = ["health", "profiles", i]
        _check_weights(
            profile.weights,
            f"health.profiles.{i} ({profile.id})",
            file,
            _line_at(root, [*path, "weights"]),
            factor_ids,
            problems,
        )
        applies = program(profile.applies_to, [*path, "applies_to"], "health", "bool")
        if applies is not None:
            profiles.append((profile.id, applies, dict(profile.weights)))
    at_risk = program(spec.at_risk, ["at_risk"], "at_risk", "bool")
    if len(problems) > start or at_risk is None:
        return None
    programs = [p for _, p in (*tiers, *stages) if p is not None]
    programs += [f.value for f in factors] + [f.missing_when for f in factors if f.missing_when]
    programs += [p for _, p, _ in profiles]
    inputs = frozenset().union(*(set(p.variables()) for p in programs))
    conditions = [str(p.source) for _, p in (*tiers, *stages) if p is not None]
    found: dict[str, frozenset[int]] = {}
    for name in inputs:
        feature = FEATURES[name]
        if feature.reaches is None:
            continue
        per_source = [
            thresholds(src, name, feature.counts_down) for src in conditions if name in src
        ]
        others = [
            str(p.source)
            for p in programs
            if name in p.variables() and str(p.source) not in conditions
        ]
        if per_source and not others and all(t is not None for t in per_source):
            found[name] = frozenset().union(*(t for t in per_source if t is not None))
    return CompiledScoring(
        spec=spec,
        tiers=tiers,
        stages=stages,
        factors=tuple(factors),
        profiles=tuple(profiles),
        at_risk=at_risk,
        source=file,
        inputs=inputs,
        thresholds=found,
    )


def _check_weights(
    weights: dict[str, int],
    where: str,
    file: str,
    line: int,
    known: set[str],
    problems: list[Problem],
) -> None:
    unknown = sorted(set(weights) - known)
    if unknown:
        problems.append(
            Problem(file, line, None, f"{where}: unknown factor(s) {', '.join(unknown)}")
        )
    total = sum(weights.values())
    if total != 100:
        problems.append(Problem(file, line, None, f"{where}: weights sum to {total}, not 100"))


_PARAM_REF = re.compile(r"\bparams\.([A-Za-z_][A-Za-z0-9_]*)\b")


def param_literal(value: ParamValue) -> str:
    """The CEL literal of a parameter value (``3.0`` stays ``3.0``, strings are quoted)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def substitute_params(source: str, params: Mapping[str, ParamValue]) -> tuple[str, list[str]]:
    """``source`` with every ``params.NAME`` replaced by its value's CEL literal, and the
    names referred to that ``params`` lacks."""
    unknown: list[str] = []

    def literal(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in params:
            unknown.append(name)
            return match.group(0)
        return param_literal(params[name])

    return _PARAM_REF.sub(literal, source), unknown


def param_refs(rule: Rule) -> set[str]:
    """The parameter names a rule's CEL conditions refer to."""
    sources = (rule.when, rule.resolve_when, rule.applies_to)
    return {m.group(1) for s in sources if s for m in _PARAM_REF.finditer(s)}


def _override(
    rule: Rule, values: dict[str, ParamValue], file: str, line: int, problems: list[Problem]
) -> Rule:
    """The rule with its parameter defaults replaced by ``values`` (problems when they do not
    fit: an undeclared name, or a value of another type than the default)."""
    merged = dict(rule.params)
    for name, value in values.items():
        if name not in rule.params:
            declared = ", ".join(sorted(rule.params)) or "none"
            problems.append(
                Problem(file, line, rule.id, f"no parameter {name!r} (declared: {declared})")
            )
            continue
        default = rule.params[name]
        if isinstance(default, bool) or isinstance(value, bool):
            ok = isinstance(default, bool) and isinstance(value, bool)
        elif isinstance(default, int | float):
            ok = isinstance(value, int | float)
            if ok and isinstance(default, float):
                value = float(value)
            elif ok and isinstance(default, int) and float(value).is_integer():
                value = int(value)
            elif ok:
                ok = False
        else:
            ok = isinstance(value, str)
        if not ok:
            problems.append(
                Problem(
                    file,
                    line,
                    rule.id,
                    f"parameter {name}: {value!r} is not of the default's type "
                    f"({type(default).__name__})",
                )
            )
            continue
        merged[name] = value
    return rule.model_copy(update={"params": merged})


def _compile(
    rule: Rule, file: str, key_lines: dict[str, int], problems: list[Problem]
) -> CompiledRule | None:
    programs: dict[str, cel.Program | None] = {}
    inputs: set[str] = set()
    start = len(problems)
    unused = set(rule.params) - param_refs(rule)
    if unused:
        problems.append(
            Problem(
                file,
                key_lines.get("params", 0),
                rule.id,
                f"params: {', '.join(sorted(unused))} declared but not used in when, "
                "resolve_when or applies_to",
            )
        )
    for key in ("when", "resolve_when", "applies_to"):
        source = getattr(rule, key)
        if source is None:
            programs[key] = None
            continue
        line = key_lines.get(key, 0)
        source, missing = substitute_params(source, rule.params)
        if missing:
            problems.append(
                Problem(
                    file,
                    line,
                    rule.id,
                    f"{key}: unknown parameter(s) {', '.join(sorted(set(missing)))} "
                    "(declare them under params:)",
                )
            )
            continue
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
        type_error = type_check(program)
        if type_error:
            problems.append(Problem(file, line, rule.id, f"{key}: {type_error}"))
            continue
        programs[key] = program
        inputs.update(program.variables())
    templates = {
        "summary": rule.summary,
        "description": rule.description,
        "task": rule.task.title if rule.task else None,
    }
    for key, template in templates.items():
        unknown_ph = sorted(placeholders(template or "") - FEATURES.keys())
        if unknown_ph:
            where = "task.title" if key == "task" else key
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
    sources = [str(p.source) for p in programs.values() if p is not None]
    found: dict[str, frozenset[int]] = {}
    for name in inputs:
        if FEATURES[name].reaches is None:
            continue
        down = FEATURES[name].counts_down
        per_source = [thresholds(src, name, down) for src in sources if name in src]
        if all(t is not None for t in per_source):
            found[name] = frozenset().union(*(t for t in per_source if t is not None))
    return CompiledRule(
        rule=rule,
        when=when,
        resolve_when=programs["resolve_when"],
        applies_to=programs["applies_to"],
        inputs=frozenset(inputs),
        source=file,
        thresholds=found,
    )


_SAMPLES: dict[type, tuple[Any, Any]] = {
    int: (0, 1000),
    float: (0.0, 1000.5),
    str: ("", "strategic"),
    bool: (False, True),
}


def type_check(program: cel.Program, want: str = "bool") -> str | None:
    """A type error found by running ``program`` on typed sample values, or None.

    Samples are the low and high values of each feature's type, so both sides of most
    ``&&``/``||`` are reached; a rule must produce a boolean (``want="bool"``), a health
    factor's value a number (``want="number"``).
    """
    names = program.variables()
    for pick in (0, 1):
        sample = {n: _SAMPLES[FEATURES[n].type][pick] for n in names}
        try:
            value = program.execute(sample)
        except ZeroDivisionError:
            continue
        except (TypeError, RuntimeError, ValueError) as exc:
            return f"CEL type error: {str(exc).split('. ')[0]}"
        if want == "bool" and not isinstance(value, bool):
            return f"must be a boolean expression, got {type(value).__name__} ({value!r})"
        if want == "number" and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"must be a number, got {type(value).__name__} ({value!r})"
    return None
