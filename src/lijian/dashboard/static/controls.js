// Steering a live campaign (docs/DASHBOARD.md): a change is shown for confirmation, then
// sent to /dashboard/api/operate with the page's CSRF token; pending amendments, blocks
// and the change log are read from /dashboard/api/changes after each change and every 5 s.
(function () {
  "use strict";
  const $ = function (id) { return document.getElementById(id); };
  const csrf = document.querySelector('input[name="csrf"]').value;
  const campaign = function () { return $("campaign").value; };
  const fieldsOf = {
    budget: ["f-budget"], end: ["f-end"], person: ["f-person"], sku: ["f-sku"],
    pause: [], resume: []
  };
  let pending = null;  // the form fields of the change waiting for its confirmation

  function showFields() {
    const kind = $("op-kind").value;
    ["f-budget", "f-end", "f-person", "f-sku"].forEach(function (cls) {
      document.querySelectorAll("." + cls).forEach(function (n) {
        n.hidden = fieldsOf[kind].indexOf(cls) < 0;
      });
    });
  }

  function fields() {
    const kind = $("op-kind").value;
    const f = { reason: $("op-reason").value };
    if (kind === "pause" || kind === "resume") { f.op = kind; }
    if (kind === "budget") {
      Object.assign(f, { op: "propose", kind: "budget", delta_fen: $("op-delta").value,
                         days: $("op-days").value });
    }
    if (kind === "end") { Object.assign(f, { op: "propose", kind: "end", last_date: $("op-last").value }); }
    if (kind === "person") { Object.assign(f, { op: "block", kind: "person", person_id: $("op-person").value }); }
    if (kind === "sku") {
      Object.assign(f, { op: "block", kind: "sku", platform: $("op-platform").value, sku: $("op-sku").value });
    }
    return f;
  }

  function send(f) {
    const body = new URLSearchParams(Object.assign({ csrf: csrf, campaign: campaign() }, f));
    return fetch("/dashboard/api/operate", {
      method: "POST", credentials: "same-origin", body: body,
      headers: { Accept: "application/json" }
    }).then(function (r) {
      return r.json().then(function (j) { return { status: r.status, body: j }; });
    }).then(function (res) {
      const ok = res.status < 300;
      $("op-result").textContent = ok
        ? "OK " + res.status + " " + (res.body.id || res.body.change_id || res.body.flag_id || "") + " " + (res.body.status || res.body.state || res.body.action || "")
        : "refused " + res.status + " " + res.body.code + ": " + (res.body.detail || "");
      $("op-result").className = ok ? "ok" : "error";
      refresh();
      return res;
    });
  }

  function confirmStep(on) {
    $("op-confirm").hidden = !on;
    $("op-cancel").hidden = !on;
    $("op-submit").hidden = on;
  }

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text === null || text === undefined ? "" : String(text);
    tr.appendChild(td);
    return td;
  }

  function button(td, label, cls, onclick) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = label;
    b.className = cls;
    b.addEventListener("click", onclick);
    td.appendChild(b);
  }

  function decide(op, key, id) {
    // The reason of an approval, rejection or lift is the form's reason field.
    const reason = $("op-reason").value;
    if (!reason) { $("op-result").textContent = "reason required"; $("op-result").className = "error"; return; }
    const f = { op: op, reason: reason };
    f[key] = id;
    send(f);
  }

  function review(f, action) {
    const reason = $("op-reason").value;
    if (!reason) { $("op-result").textContent = "reason required"; $("op-result").className = "error"; return; }
    const body = { op: "review", flag_id: f.id, action: action, reason: reason };
    // A flag naming several persons: the person field of the form says which one.
    if (action === "block_person" && f.person_ids.length > 1) { body.person_id = $("op-person").value; }
    if (action === "block_sku") { body.sku = $("op-sku").value; }
    send(body);
  }

  function list(what) {
    return fetch("/dashboard/api/changes?campaign=" + encodeURIComponent(campaign()) + "&list=" + what,
                 { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) { return r.ok ? r.json() : null; });
  }

  function refresh() {
    list("amendments").then(function (j) {
      if (!j) { return; }
      const tb = $("pending").querySelector("tbody");
      tb.textContent = "";
      j.amendments.filter(function (a) { return a.status === "proposed"; }).forEach(function (a) {
        const tr = document.createElement("tr");
        tr.dataset.id = a.id;
        cell(tr, a.id);
        cell(tr, a.kind);
        cell(tr, a.kind === "budget" ? a.delta_fen + " fen / " + (Array.isArray(a.days) ? a.days.join(",") : a.days) : a.last_date);
        cell(tr, a.proposed_by);
        cell(tr, a.reason);
        const td = cell(tr, "");
        button(td, "批准 approve", "approve", function () { decide("approve", "amendment_id", a.id); });
        button(td, "驳回 reject", "reject", function () { decide("reject", "amendment_id", a.id); });
        tb.appendChild(tr);
      });
    });
    list("blocks").then(function (j) {
      if (!j) { return; }
      const tb = $("blocks").querySelector("tbody");
      tb.textContent = "";
      j.blocks.forEach(function (b) {
        const tr = document.createElement("tr");
        tr.dataset.id = b.id;
        cell(tr, b.id);
        cell(tr, b.kind === "person" ? b.person_id : b.platform + "/" + b.sku);
        cell(tr, b.by);
        cell(tr, b.reason);
        cell(tr, b.active ? "active" : "lifted");
        const td = cell(tr, "");
        if (b.active) { button(td, "解除 lift", "lift", function () { decide("lift", "block_id", b.id); }); }
        tb.appendChild(tr);
      });
    });
    list("review_queue").then(function (j) {
      if (!j) { return; }
      $("risk-open").textContent = "(" + j.open_count + ")";
      const tb = $("risk-queue").querySelector("tbody");
      tb.textContent = "";
      j.flags.slice(0, 100).forEach(function (f) {
        const tr = document.createElement("tr");
        tr.dataset.id = f.id;
        cell(tr, f.id);
        cell(tr, f.code);
        cell(tr, f.person_ids.join(" "));
        cell(tr, f.figures.map(function (x) { return x.figure + "=" + x.value; }).join(" "));
        cell(tr, f.raised_at);
        const td = cell(tr, "");
        // The reason is the form's reason field, as for approvals and lifts.
        button(td, "忽略 dismiss", "dismiss", function () { review(f, "dismiss"); });
        button(td, "屏蔽用户 block person", "block-person", function () { review(f, "block_person"); });
        button(td, "屏蔽商品 block SKU", "block-sku", function () { review(f, "block_sku"); });
        tb.appendChild(tr);
      });
    });
    list("changes").then(function (j) {
      if (!j) { return; }
      const tb = $("changes").querySelector("tbody");
      tb.textContent = "";
      j.changes.slice(-50).reverse().forEach(function (c) {
        const tr = document.createElement("tr");
        cell(tr, c.id); cell(tr, c.kind); cell(tr, c.at); cell(tr, c.by); cell(tr, c.reason);
        tb.appendChild(tr);
      });
    });
  }

  $("op-kind").addEventListener("change", showFields);
  $("op-form").addEventListener("submit", function (ev) {
    ev.preventDefault();
    pending = fields();
    const shown = Object.keys(pending).filter(function (k) { return pending[k] !== ""; })
      .map(function (k) { return k + "=" + pending[k]; }).join("  ");
    $("op-summary").textContent = "确认 confirm: " + shown;
    confirmStep(true);
  });
  $("op-confirm").addEventListener("click", function () {
    const f = pending;
    pending = null;
    confirmStep(false);
    $("op-summary").textContent = "";
    if (f) { send(f); }
  });
  $("op-cancel").addEventListener("click", function () {
    pending = null;
    confirmStep(false);
    $("op-summary").textContent = "";
  });
  $("campaign").addEventListener("change", refresh);
  showFields();
  refresh();
  setInterval(refresh, 5000);
})();
