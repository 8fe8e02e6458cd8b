"""Static checks of deploy/monitoring that promtool and amtool do not make (check.sh runs
this in its venv, with grafana-foundation-sdk and PyYAML):

  dashboards    every grafana/dashboards/*.json is what grafana/generate.py builds, and
                is valid against the dashboard schema as grafana-foundation-sdk models it:
                it decodes into the SDK's models with no key left over (decode + encode
                gives back the same JSON), every value has the type the model declares,
                every panel type and data source type is one the SDK knows, and ids,
                refIds, grid positions and the data source variable are consistent;
  provisioning  the Grafana provisioning files have the shape Grafana reads;
  rules         every alert has severity critical|warning, a family, a summary, a
                description and a runbook_url whose anchor is a heading of RUNBOOK.md, and
                tests/*.yml have, for every alert, a case where it fires and one where it
                stays silent.

    python validate.py            # all checks; exit 1 on any failure
"""

import enum
import json
import pathlib
import re
import subprocess
import sys
import tempfile
import types
import typing

import yaml
from grafana_foundation_sdk.cog import plugins, runtime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dashboard_model
from grafana_foundation_sdk.models import prometheus as prometheus_model

HERE = pathlib.Path(__file__).resolve().parent
errors: list[str] = []


def fail(msg: str) -> None:
    errors.append(msg)


# ---------------------------------------------------------------- dashboards

def _hints(cls) -> dict:
    module = sys.modules[cls.__module__]
    return typing.get_type_hints(cls.__init__, globalns=vars(module))


def _type_errors(value, tp, path: str) -> list[str]:
    """Errors of `value` against the SDK's type annotation `tp` (empty list: fits)."""
    if tp in (typing.Any, object):
        # Panel options and field config are declared `object` but decoded into the
        # panel plugin's own models: check those.
        return _model_errors(value, path)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return []
        tried = [_type_errors(value, t, path) for t in options if t is not type(None)]
        return [] if any(not e for e in tried) else min(tried, key=len)
    if origin is typing.Literal:
        return [] if value in typing.get_args(tp) else [f"{path}: {value!r} is not one of {typing.get_args(tp)}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        (item,) = typing.get_args(tp)
        return [e for i, v in enumerate(value) for e in _type_errors(v, item, f"{path}[{i}]")]
    if origin is dict:
        if not isinstance(value, dict):
            return [f"{path}: expected an object, got {type(value).__name__}"]
        _, item = typing.get_args(tp)
        return [e for k, v in value.items() for e in _type_errors(v, item, f"{path}.{k}")]
    if value is None:
        return [f"{path}: null where {getattr(tp, '__name__', tp)} is required"]
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        allowed = {m.value for m in tp}
        raw = value.value if isinstance(value, enum.Enum) else value
        return [] if raw in allowed else [f"{path}: {value!r} is not a {tp.__name__} ({sorted(map(str, allowed))})"]
    if tp is bool:
        return [] if isinstance(value, bool) else [f"{path}: expected a boolean, got {value!r}"]
    if tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected an integer, got {value!r}"]
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number, got {value!r}"]
    if tp is str:
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {value!r}"]
    if isinstance(tp, type):
        if not isinstance(value, tp):
            return [f"{path}: expected {tp.__name__}, got {type(value).__name__}"]
        return _model_errors(value, path)
    return []


def _model_errors(obj, path: str) -> list[str]:
    if isinstance(obj, runtime.UnknownDataquery):
        return [f"{path}: a query of a data source type the SDK does not know"]
    if not hasattr(obj, "to_json") or not hasattr(type(obj), "from_json"):
        return []
    out = []
    for name, tp in _hints(type(obj)).items():
        if name == "return":
            continue
        out += _type_errors(getattr(obj, name), tp, f"{path}.{name}")
    return out


def _normalize(value):
    return json.loads(json.dumps(value, cls=JSONEncoder))


def check_dashboard(name: str, raw: dict, seen_uids: dict) -> None:
    model = dashboard_model.Dashboard.from_json(raw)
    again = _normalize(model)
    if again != raw:
        # Keys the models do not know are dropped on decode: find them for the message.
        fail(f"{name}: does not round-trip through the SDK's Dashboard model "
             f"(unknown keys or wrong nesting): {_first_diff(raw, again)}")
    for e in _model_errors(model, name):
        fail(e)

    if not raw.get("uid") or len(raw["uid"]) > 40:
        fail(f"{name}: uid must be 1-40 characters")
    if raw.get("uid") in seen_uids:
        fail(f"{name}: uid {raw['uid']} also used by {seen_uids[raw['uid']]}")
    seen_uids[raw.get("uid")] = name
    if not raw.get("title"):
        fail(f"{name}: no title")
    variables = {v["name"]: v for v in raw.get("templating", {}).get("list", [])}
    if variables.get("datasource", {}).get("type") != "datasource" or variables["datasource"].get("query") != "prometheus":
        fail(f"{name}: needs a `datasource` variable of type prometheus")

    ids = set()
    known_panels = runtime.Runtime().panelcfg_variants
    for p in raw.get("panels", []):
        where = f"{name} panel {p.get('id')} {p.get('title')!r}"
        if p.get("id") in ids or not isinstance(p.get("id"), int) or p["id"] <= 0:
            fail(f"{where}: panel ids must be distinct positive integers")
        ids.add(p.get("id"))
        g = p.get("gridPos") or {}
        ints = all(isinstance(g.get(k), int) for k in "xywh")
        if not (ints and g["x"] >= 0 and g["y"] >= 0 and g["w"] > 0 and g["h"] > 0 and g["x"] + g["w"] <= 24):
            fail(f"{where}: gridPos {g} outside the 24-column grid")
        if p["type"] == "row":
            continue
        if p["type"] not in known_panels:
            fail(f"{where}: panel type {p['type']} unknown to the SDK")
        if p.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
            fail(f"{where}: datasource must be the ${{datasource}} variable")
        targets = p.get("targets") or []
        if not targets:
            fail(f"{where}: no query")
        refs = [t.get("refId") for t in targets]
        if len(set(refs)) != len(refs) or not all(refs):
            fail(f"{where}: refIds must be distinct and non-empty: {refs}")
        for t in targets:
            if not t.get("expr", "").strip():
                fail(f"{where}: empty expression")
    for i, p in enumerate(model.panels or []):
        for j, t in enumerate(getattr(p, "targets", None) or []):
            if not isinstance(t, prometheus_model.Dataquery):
                fail(f"{name} panel {i} target {j}: not decoded as a Prometheus query")


def _first_diff(a, b, path="$"):
    if type(a) is not type(b):
        return f"{path}: {a!r} vs {b!r}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in b:
                return f"{path}.{k} is not in the model"
            if k not in a:
                return f"{path}.{k} added by the model"
            if a[k] != b[k]:
                return _first_diff(a[k], b[k], f"{path}.{k}")
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_diff(x, y, f"{path}[{i}]")
    return f"{path}: {a!r} vs {b!r}"


def check_dashboards() -> int:
    plugins.register_default_plugins()
    folder = HERE / "grafana" / "dashboards"
    files = sorted(folder.glob("*.json"))
    if not files:
        fail("no dashboards in grafana/dashboards")
    seen: dict = {}
    for f in files:
        try:
            check_dashboard(f.name, json.loads(f.read_text()), seen)
        except Exception as e:  # a decode error is a schema error
            fail(f"{f.name}: cannot be decoded by the SDK: {e!r}")
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(HERE / "grafana" / "generate.py"), tmp], check=True, stdout=subprocess.DEVNULL)
        fresh = {p.name: p.read_text() for p in pathlib.Path(tmp).glob("*.json")}
    committed = {p.name: p.read_text() for p in files}
    if fresh != committed:
        stale = sorted(n for n in set(fresh) | set(committed) if fresh.get(n) != committed.get(n))
        fail(f"grafana/dashboards differ from what grafana/generate.py builds: {stale} (run it)")
    return len(files)


# ---------------------------------------------------------------- provisioning

def check_provisioning() -> None:
    prov = HERE / "grafana" / "provisioning"
    ds_files = sorted((prov / "datasources").glob("*.yml"))
    db_files = sorted((prov / "dashboards").glob("*.yml"))
    if not ds_files or not db_files:
        fail("grafana/provisioning needs datasources/*.yml and dashboards/*.yml")
    for f in ds_files:
        doc = yaml.safe_load(f.read_text())
        if doc.get("apiVersion") != 1 or not doc.get("datasources"):
            fail(f"{f.name}: needs apiVersion: 1 and datasources")
        for ds in doc.get("datasources", []):
            for key in ("name", "type", "access", "url", "uid"):
                if not ds.get(key):
                    fail(f"{f.name}: datasource without {key}")
            if ds.get("type") != "prometheus":
                fail(f"{f.name}: the dashboards need a prometheus data source")
    for f in db_files:
        doc = yaml.safe_load(f.read_text())
        if doc.get("apiVersion") != 1 or not doc.get("providers"):
            fail(f"{f.name}: needs apiVersion: 1 and providers")
        for p in doc.get("providers", []):
            if p.get("type") != "file" or not (p.get("options") or {}).get("path"):
                fail(f"{f.name}: provider {p.get('name')} must be type file with options.path")


# ---------------------------------------------------------------- rules

def _anchor(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    h = heading.strip().lower()
    h = re.sub(r"[^\w\- ]", "", h)
    return h.replace(" ", "-")


def check_rules() -> int:
    rules = yaml.safe_load((HERE / "rules" / "kurz.rules.yml").read_text())
    runbook = (HERE / "RUNBOOK.md").read_text()
    anchors = {_anchor(m) for m in re.findall(r"^#+ (.+)$", runbook, re.M)}
    alerts = [r for g in rules["groups"] for r in g["rules"] if "alert" in r]
    names = [a["alert"] for a in alerts]
    if len(set(names)) != len(names):
        fail("alert names must be unique")
    for a in alerts:
        n = a["alert"]
        labels, ann = a.get("labels", {}), a.get("annotations", {})
        if labels.get("severity") not in ("critical", "warning"):
            fail(f"{n}: severity must be critical or warning")
        if not labels.get("family"):
            fail(f"{n}: no family label (the inhibition key)")
        for key in ("summary", "description", "runbook_url"):
            if not ann.get(key):
                fail(f"{n}: no {key} annotation")
        url = ann.get("runbook_url", "")
        if not url.startswith("deploy/monitoring/RUNBOOK.md#") or url.split("#", 1)[1] not in anchors:
            fail(f"{n}: runbook_url {url} is not a heading of RUNBOOK.md")
    fires, silent = set(), set()
    for f in sorted((HERE / "tests").glob("*.yml")):
        doc = yaml.safe_load(f.read_text())
        if "../rules/kurz.rules.yml" not in doc.get("rule_files", []):
            fail(f"tests/{f.name}: does not load ../rules/kurz.rules.yml")
        for t in doc.get("tests", []):
            for case in t.get("alert_rule_test", []):
                (fires if case.get("exp_alerts") else silent).add(case["alertname"])
    for n in names:
        if n not in fires:
            fail(f"{n}: no unit test where it fires")
        if n not in silent:
            fail(f"{n}: no unit test where it stays silent")
    for n in (fires | silent) - set(names):
        fail(f"tests name an alert that does not exist: {n}")
    return len(names)


def selftest() -> None:
    """The dashboard check must reject broken dashboards, or its pass means nothing."""
    raw = json.loads((HERE / "grafana" / "dashboards" / "kurz-overview.json").read_text())
    ts = next(i for i, p in enumerate(raw["panels"]) if p["type"] == "timeseries")
    breakages = {
        "unknown key": lambda d: d["panels"][ts].__setitem__("bogus", 1),
        "string height": lambda d: d["panels"][ts]["gridPos"].__setitem__("h", "8"),
        "unknown panel type": lambda d: d["panels"][ts].__setitem__("type", "nosuchpanel"),
        "bad enum in options": lambda d: d["panels"][ts]["options"]["legend"].__setitem__("placement", "middle"),
        "bad type in field config": lambda d: d["panels"][ts]["fieldConfig"]["defaults"]["custom"].__setitem__("lineWidth", "x"),
        "query flag not boolean": lambda d: d["panels"][ts]["targets"][0].__setitem__("instant", "yes"),
        "duplicate panel id": lambda d: d["panels"][ts].__setitem__("id", d["panels"][0]["id"]),
        "empty expression": lambda d: d["panels"][ts]["targets"][0].__setitem__("expr", ""),
    }
    before = len(errors)
    for what, breakage in breakages.items():
        broken = json.loads(json.dumps(raw))
        breakage(broken)
        mark = len(errors)
        check_dashboard("selftest", broken, {})
        if len(errors) == mark:
            errors.append(f"selftest: the dashboard check accepted a dashboard with {what}")
        else:
            del errors[mark:]
    assert len(errors) >= before


def main() -> int:
    n_boards = check_dashboards()
    selftest()
    check_provisioning()
    n_alerts = check_rules()
    for e in errors:
        print(f"FAIL {e}")
    if errors:
        return 1
    print(f"ok: {n_boards} dashboards valid and up to date, provisioning ok, "
          f"{n_alerts} alerts with severity/family/annotations/runbook and fire+silent tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
