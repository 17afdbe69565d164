// mcp-config console: the Fleet page (docs/fleet.md). Uses app.js's helpers (api, el, $).
// Polls /api/fleet once a second while the page is shown (one request per open page:
// bounded by the token's rate limit like every console call). Drain/undrain need a
// token that may write /mcp/operator/instances/ and a confirm step.
"use strict";

const FLEET_POLL_MS = 1000;
const fleet = { timer: null, pending: null, last: null };

function fleetRow(model, inst) {
  const canDrain = !!(state.me && state.me.can_drain);
  const cells = inst.invalid
    ? [el("td", { colspan: "7", class: "error" }, "invalid: " + inst.invalid)]
    : [
        el("td", {}, inst.endpoint),
        el("td", {}, inst.healthy ? "healthy" : "unhealthy"),
        el("td", {}, fmt(inst.in_flight)),
        el("td", {}, fmt(inst.weight)),
        el("td", {}, inst.ttl === null ? "–" : inst.ttl + " s"),
        el("td", {}, inst.draining ? "draining" : (inst.enabled ? "serving" : "disabled")),
        el("td", {}, canDrain
          ? el("button", { class: "fleet-toggle", onclick: () => askDrain(model, inst.id, !inst.draining) },
              inst.draining ? "Undrain…" : "Drain…")
          : ""),
      ];
  return el("tr", { "data-model": model, "data-id": inst.id, "data-draining": inst.draining ? "1" : "0" },
    el("td", {}, inst.id), ...cells);
}

function renderFleet(data) {
  const box = $("fleet-models");
  box.replaceChildren();
  $("fleet-state").textContent = `revision ${data.revision}` + (data.more ? " · more instances than shown" : "");
  if (!data.models.length) { box.append(el("p", { class: "muted" }, "no instance is registered")); return; }
  for (const m of data.models) {
    const head = el("tr", {}, ...["id", "endpoint", "health", "in-flight", "weight", "lease TTL left", "state", ""]
      .map((h) => el("th", {}, h)));
    const table = el("table", { class: "table fleet", "data-model": m.model },
      el("thead", {}, head), el("tbody", {}, ...m.instances.map((i) => fleetRow(m.model, i))));
    box.append(el("h3", {}, `${m.model} (${m.instances.length})`), table);
  }
}

async function pollFleet() {
  try {
    const data = await api("/api/fleet");
    fleet.last = data;
    renderFleet(data);
    $("fleet-error").hidden = true;
  } catch (e) {
    $("fleet-error").hidden = false;
    $("fleet-error").textContent = e.message;
  }
}

function askDrain(model, id, draining) {
  fleet.pending = { model, id, draining };
  $("fleet-confirm-text").textContent = `${draining ? "Drain" : "Undrain"} ${model}/${id}?`
    + (draining ? " Pickers stop sending it new requests." : " It takes requests again.");
  $("fleet-confirm-box").hidden = false;
}

$("fleet-cancel").addEventListener("click", () => { fleet.pending = null; $("fleet-confirm-box").hidden = true; });
$("fleet-confirm").addEventListener("click", async () => {
  const p = fleet.pending;
  if (!p) return;
  fleet.pending = null;
  $("fleet-confirm-box").hidden = true;
  try {
    await api("/api/fleet/drain", p);
    await pollFleet();
  } catch (e) {
    $("fleet-error").hidden = false;
    $("fleet-error").textContent = e.message;
  }
});

window.fleetPage = {
  visible(on) {
    if (on && fleet.timer === null) {
      pollFleet();
      fleet.timer = setInterval(pollFleet, FLEET_POLL_MS);
    } else if (!on && fleet.timer !== null) {
      clearInterval(fleet.timer);
      fleet.timer = null;
    }
  },
};
window.fleetPage.visible(location.hash === "#fleet");
