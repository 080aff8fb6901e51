"""Paths of deployments (activations), their history and the activation requests that wait for
approval."""
from __future__ import annotations

from gateway.api.mgmt.common import P
from gateway.api.openapi.bodies import BODIES
from gateway.api.openapi.helpers import (
    CONFLICT,
    WITH_BODY,
    arr,
    awaiting_approval,
    mgmt,
    ok,
    preview_params,
    previewable,
    query,
    ref,
)
from gateway.api.openapi.helpers import data_of as d


def deployment_paths() -> dict:
    return {
        P + "/deployments": {
            "get": mgmt("Deployments (activations)", ok(d(arr(ref("Deployment")))), params=[
                query("cohort"), query("release"), query("delta_from"), query("delta_to"),
                query("status", description="`active` for active ones only")]),
            "post": mgmt("Activate a release in a cohort, or change its rollout (a staged rollout of the same "
                         "release: widening keeps every staged device, narrowing unstages only those that have "
                         "not taken it; 409 when the cohort has a staged rollout of another release of the "
                         "software type)",
                         {**ok(d(ref("Deployment")), 201, "activated"),
                          **ok(d(previewable(ref("Deployment"))), 200, "changed, or the preview of a dry run"),
                          **awaiting_approval()},
                         body=BODIES["deployment"], body_required=True, codes=WITH_BODY + (409,)),
        },
        P + "/deployments/{id}": {"delete": mgmt(
            "Deactivate (pull) a deployment", {**ok(d(previewable(ref("Deployment")))), **awaiting_approval()},
            codes=CONFLICT, params=preview_params())},
        P + "/deployment-history": {"get": mgmt("Activation events, newest first",
                                                ok(d(arr(ref("DeploymentEvent")))))},
        P + "/activation-requests": {"get": mgmt("Activation requests", ok(d(arr(ref("ActivationRequest")))), params=[
            query("status", {"enum": ["pending", "approved", "rejected", "all"]})])},
        P + "/activation-requests/{id}/approve": {"post": mgmt(
            "Approve a request (another identity)", ok(d(ref("ActivationRequest"))), codes=CONFLICT)},
        P + "/activation-requests/{id}/reject": {"post": mgmt(
            "Reject a request (another identity)", ok(d(ref("ActivationRequest"))), codes=CONFLICT)},
    }
