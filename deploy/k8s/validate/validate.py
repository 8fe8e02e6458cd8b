"""Validates rendered kustomize overlays (deploy/check.sh runs this):

  - every built-in object against the Kubernetes OpenAPI schemas in strict mode
    (kubernetes-validate, pinned Kubernetes version); a kind with no schema fails;
  - ServiceMonitor and PrometheusRule against the prometheus-operator CRD schemas
    (crds.mjs, node);
  - what the manifests promise each other: the grace period covers the preStop sleep and
    KURZ_SHUTDOWN_GRACE_SECS, probes hit /health, the dev overlay is one SQLite writer.

    python validate.py K8S_VERSION NPM_DIR OVERLAY=FILE...

NPM_DIR holds crds.mjs and the node_modules of package.json (deploy/check.sh puts both in
target/deploy-npm).
"""

import json
import os
import subprocess
import sys
import tempfile

import yaml
from kubernetes_validate import utils as kv

CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}


def fail(msg):
    print(f"FAIL: {msg}")
    return 1


def consistency(overlay, docs):
    errors = 0
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    dep = by_kind["Deployment"][0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    config = {}
    for cm in by_kind.get("ConfigMap", []):
        config.update(cm.get("data", {}))
    grace = int(config.get("KURZ_SHUTDOWN_GRACE_SECS", "30"))
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    period = pod.get("terminationGracePeriodSeconds", 30)
    if period < pre_stop + grace + 1:
        errors += fail(f"{overlay}: terminationGracePeriodSeconds {period} < preStop sleep {pre_stop} "
                       f"+ KURZ_SHUTDOWN_GRACE_SECS {grace} + 1")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if c.get(probe, {}).get("httpGet", {}).get("path") != "/health":
            errors += fail(f"{overlay}: {probe} is not on /health")
    sqlite = config.get("KURZ_DATABASE_URL", "").startswith("sqlite:")
    if sqlite:
        if dep["spec"].get("replicas") != 1 or dep["spec"].get("strategy", {}).get("type") != "Recreate":
            errors += fail(f"{overlay}: SQLite has one writer: replicas 1 and strategy Recreate")
        if "HorizontalPodAutoscaler" in by_kind:
            errors += fail(f"{overlay}: SQLite has one writer: no HorizontalPodAutoscaler")
    else:
        hpa = by_kind.get("HorizontalPodAutoscaler", [{}])[0].get("spec", {})
        if (hpa.get("minReplicas"), hpa.get("maxReplicas")) != (3, 50):
            errors += fail(f"{overlay}: HorizontalPodAutoscaler should scale 3-50 pods")
        if {"secretRef": {"name": "kurz-secrets"}} not in c.get("envFrom", []):
            errors += fail(f"{overlay}: no database URL: neither sqlite in the ConfigMap nor the kurz-secrets Secret")
        if not any(i.get("args") == ["migrate"] for i in pod.get("initContainers", [])):
            errors += fail(f"{overlay}: no `kurz migrate` init container on PostgreSQL")
    if not errors:
        print(f"INFO {overlay}: grace period {period} s >= preStop {pre_stop} s + shutdown grace {grace} s; "
              f"probes on /health; {'one SQLite writer (Recreate, no autoscaler)' if sqlite else 'autoscaled 3-50, migrate init container'}")
    return errors


def main():
    version, npm_dir = sys.argv[1], sys.argv[2]
    errors = 0
    crds = []
    for arg in sys.argv[3:]:
        overlay, path = arg.split("=", 1)
        docs = [d for d in yaml.safe_load_all(open(path)) if d]
        for d in docs:
            name = f"{overlay}: {d['kind']}/{d['metadata']['name']}"
            if d["kind"] in CRD_KINDS:
                crds.append({"overlay": overlay, "object": d})
                continue
            try:
                kv.validate(d, version, strict=True)
            except kv.ValidationError as e:
                errors += fail(f"{name}: {'.'.join(str(p) for p in e.path)}: {e.message}")
            except kv.SchemaNotFoundError:
                errors += fail(f"{name}: no Kubernetes {version} schema for {d['apiVersion']} {d['kind']}")
        print(f"INFO {overlay}: {len(docs) - sum(d['kind'] in CRD_KINDS for d in docs)} built-in objects "
              f"checked against the Kubernetes {version} schemas (strict)")
        errors += consistency(overlay, docs)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(crds, f)
    r = subprocess.run(["node", os.path.join(npm_dir, "crds.mjs"), f.name])
    os.unlink(f.name)
    errors += r.returncode != 0
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
