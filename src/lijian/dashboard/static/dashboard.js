// The dashboard page: one EventSource for live snapshots, plus history and settlement
// fetched on demand. Plain JavaScript; every figure arrives in fen and is formatted here.
"use strict";

(function () {
  const i18n = window.LIJIAN_I18N;
  const charts = window.LIJIAN_CHARTS;
  const t = i18n.t;
  const boot = JSON.parse(document.getElementById("boot").textContent);
  const $ = function (id) { return document.getElementById(id); };
  const HISTORY_REFRESH_MS = 10000;
  const SETTLEMENT_REFRESH_MS = 2000;
  const HISTORY_MIN_GAP_MS = 2000;
  const RECONNECT_MS = 2000;

  let campaign = boot.campaigns[0].id;
  let source = null;
  let last = null;         // the latest snapshot
  let history = null;      // the latest history rows
  let historyDay = null;   // the day whose burn-down is shown under the history
  let settleDay = null;
  let settlement = null;   // the latest settlement report shown
  let settleSeq = -1;

  // ------------------------------------------------------------------ formatting
  const money = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2,
                                                 maximumFractionDigits: 2 });
  const integer = new Intl.NumberFormat("en-US");
  function cny(fen) {
    if (fen === null || fen === undefined) return "–";
    return (fen < 0 ? "-¥" : "¥") + money.format(Math.abs(fen) / 100);
  }
  function cnyShort(fen) {
    const yuan = fen / 100;
    if (i18n.lang() === "zh") {
      if (Math.abs(yuan) >= 1e8) return (yuan / 1e8).toFixed(2) + "亿";
      if (Math.abs(yuan) >= 1e4) return (yuan / 1e4).toFixed(1) + "万";
      return yuan.toFixed(0);
    }
    if (Math.abs(yuan) >= 1e6) return (yuan / 1e6).toFixed(2) + "M";
    if (Math.abs(yuan) >= 1e3) return (yuan / 1e3).toFixed(1) + "k";
    return yuan.toFixed(0);
  }
  function num(n) { return n === null || n === undefined ? "–" : integer.format(n); }
  function times(x) { return x === null || x === undefined ? "–" : "×" + x.toFixed(2); }
  function hms(iso) { return iso ? iso.slice(11, 19) : "–"; }
  function when(iso) { return iso ? iso.slice(5, 16).replace("T", " ") : "–"; }
  // Every time on the page is campaign time: the header and the audit line name the zone.
  function zoned(iso) {
    if (!iso) return "";
    const m = /([+-]\d\d:\d\d)$/.exec(iso);
    return iso.slice(0, 19).replace("T", " ") + " UTC" + (m ? m[1] : "+00:00");
  }
  function clockLabel(ms, off) { return new Date(ms + off).toISOString().slice(11, 16); }
  function platformName(p) { return t("platform_" + p, p); }
  function cell(row, value, cls) {
    const td = document.createElement("td");
    td.textContent = value;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }
  function setText(id, value) {
    const node = $(id);
    if (node.textContent !== value) node.textContent = value;
  }

  // ------------------------------------------------------------------- network
  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location.href = "/login"; throw new Error("login"); }
        if (!r.ok) throw new Error(url + ": " + r.status);
        return r.json();
      });
  }
  function q(extra) {
    return "?campaign=" + encodeURIComponent(campaign) + (extra || "");
  }

  function markLive(on) {
    const live = $("live");
    live.className = "live " + (on ? "on" : "off");
    live.setAttribute("data-i18n", on ? "live" : "offline");
    live.textContent = t(on ? "live" : "offline");
  }

  function connect() {
    if (source) source.close();
    source = new EventSource("/dashboard/events" + q());
    source.addEventListener("snapshot", function (ev) {
      last = JSON.parse(ev.data);
      markLive(true);
      render(last);
    });
    source.addEventListener("logout", function () { window.location.href = "/login"; });
    source.onerror = function () {
      markLive(false);
      if (source.readyState === EventSource.CLOSED) {
        // Refused (session gone, too many streams): ask why, then retry or log in.
        setTimeout(function () {
          getJSON("/dashboard/api/history" + q()).then(connect, function () {
            setTimeout(connect, RECONNECT_MS);
          });
        }, RECONNECT_MS);
      }
    };
  }

  // -------------------------------------------------------------------- render
  function render(s) {
    if (s.error) { $("feed").textContent = s.error; return; }
    const badge = $("state");
    badge.textContent = t("state_" + s.state, s.state);
    badge.className = "badge state-" + s.state;
    setText("clock", zoned(s.now));
    renderToday(s);
    renderBurn($("burn"), s.burn, s.now, 640, 220);
    renderGrants(s.grants_per_s);
    renderBudget(s);
    renderDeclines(s.declines);
    renderPlatforms(s.platforms);
    renderCategories(s.categories);
    renderAudit(s.audit, s.feed);
    if (settleDay === null && s.today) selectSettleDay(s.today.date);
    if (s.feed.seq !== settleSeq) {
      settleSeq = s.feed.seq;
      loadSettlement(false);
      historyStale = true;
    }
  }

  function renderToday(s) {
    const d = s.today;
    if (!d) {
      charts.gauge($("gauge"), 0, 0, "–", "");
      ["t-released", "t-held", "t-granted", "t-remaining", "t-sold-out"].forEach(function (id) {
        setText(id, "–");
      });
    } else {
      const share = d.released_fen > 0 ? (100 * d.remaining_fen / d.released_fen) : 0;
      charts.gauge($("gauge"), d.remaining_fen, d.released_fen, cny(d.remaining_fen),
                   t("remaining") + " " + share.toFixed(1) + "%");
      setText("t-released", cny(d.released_fen));
      setText("t-held", cny(d.held_fen));
      setText("t-granted", cny(d.granted_fen));
      setText("t-remaining", cny(d.remaining_fen));
      setText("t-sold-out", hms(d.sold_out_at));
    }
    setText("t-next", when(s.next_release_at));
    setText("t-draw", drawText(s.draw, s.window_waiting));
  }

  // Fair release: before the window ends only the commitment is known, then the seed.
  function drawText(d, waiting) {
    if (!d) return t("draw_none");
    const short = function (hex) { return hex.slice(0, 8) + "…" + hex.slice(-4); };
    const head = d.window_s + " s · ";
    if (d.seed === null) {
      const w = waiting ? " · " + t("draw_waiting") + " " + waiting : "";
      return head + t("draw_commitment") + " " + short(d.commitment) + w;
    }
    const n = d.arrivals === null ? "" : " · " + d.granted + "/" + d.arrivals;
    return head + t("draw_seed") + " " + short(d.seed) + n;
  }

  function renderBurn(svg, burn, nowIso, width, height) {
    if (!burn) {
      charts.stepLine(svg, [], { width: width, height: height, x0: 0, x1: 840, yMax: 1,
        tick: 120, xLabel: function () { return ""; }, yLabel: function () { return ""; },
        xEnd: 0, empty: t("no_data") });
      return;
    }
    const off = burn.utc_offset_min * 60000;
    const span = Math.max(1, Math.round((burn.closes_at_ms - burn.opens_at_ms) / 60000));
    // Zoom on what happened: a rush sells out in minutes, a whole day would hide it.
    const pts = burn.points;
    const busy = pts.length > 1 ? pts[pts.length - (burn.closed ? 2 : 1)][0] : 0;
    const nowMs = nowIso ? Date.parse(nowIso) : burn.opens_at_ms + busy * 60000;
    const nowMin = Math.min(span, Math.max(0, (nowMs - burn.opens_at_ms) / 60000));
    const x1 = Math.min(span, Math.max(60, Math.ceil(Math.max(busy * 1.25, burn.closed ? 0 :
                                                              nowMin))));
    const tick = x1 <= 60 ? 10 : x1 <= 180 ? 30 : x1 <= 360 ? 60 : 120;
    let yMax = burn.released_fen;
    pts.forEach(function (p) { yMax = Math.max(yMax, p[1]); });
    charts.stepLine(svg, pts, {
      width: width, height: height, x0: 0, x1: x1, yMax: yMax, tick: tick,
      xEnd: burn.closed ? x1 : nowMin,
      xLabel: function (m) { return clockLabel(burn.opens_at_ms + m * 60000, off); },
      yLabel: cnyShort, empty: t("no_data"),
    });
  }

  function renderGrants(g) {
    charts.bars($("grants"), g.series, { width: 320, height: 120,
      leftLabel: "-" + g.series.length + "s", rightLabel: t("last_second") });
    setText("g-last", num(g.last_s));
    setText("g-peak", num(g.peak_today));
    setText("g-holds", num(g.holds_today));
  }

  function renderBudget(s) {
    const b = s.budget;
    const meter = $("budget-meter");
    const pct = function (x) { return b.budget_fen > 0 ? (100 * x / b.budget_fen) : 0; };
    meter.querySelector(".granted").style.width = pct(b.granted_fen).toFixed(2) + "%";
    meter.querySelector(".held").style.width = pct(b.held_fen).toFixed(2) + "%";
    setText("b-budget", cny(b.budget_fen));
    setText("b-granted", cny(b.granted_fen) + " (" + pct(b.granted_fen).toFixed(1) + "%)");
    setText("b-held", cny(b.held_fen));
    setText("b-clawed", cny(b.clawed_back_fen));
    setText("b-gmv", cny(s.totals.gmv_fen));
    setText("b-leverage", times(s.totals.leverage));
  }

  function renderDeclines(declines) {
    if (declines === null) { charts.hbars($("declines"), [], "n/a"); return; }
    const items = Object.keys(declines).map(function (code) {
      return { label: t("reason_" + code, code), value: declines[code],
               text: num(declines[code]) };
    }).sort(function (a, b) { return b.value - a.value; });
    charts.hbars($("declines"), items, t("none_yet"));
  }

  function renderPlatforms(rows) {
    const body = $("platforms").querySelector("tbody");
    body.textContent = "";
    rows.forEach(function (r) {
      const tr = document.createElement("tr");
      tr.setAttribute("data-platform", r.platform);
      cell(tr, platformName(r.platform), "text");
      cell(tr, num(r.count));
      cell(tr, cny(r.gmv_fen));
      cell(tr, cny(r.net_subsidy_fen), "net");
      cell(tr, times(r.leverage));
      body.appendChild(tr);
    });
  }

  function renderCategories(rows) {
    charts.hbars($("categories"), rows.map(function (r) {
      return { label: t("cat_" + r.category, r.category), value: r.net_subsidy_fen,
               text: cny(r.net_subsidy_fen) };
    }), t("none_yet"));
  }

  function auditName(name) {
    return t("check_" + name.split(/[ :]/)[0].toLowerCase(), name);
  }

  function renderAudit(audit, feed) {
    const box = $("audit");
    box.textContent = "";
    const badge = document.createElement("p");
    if (!audit) {
      badge.className = "badge";
      badge.textContent = t("audit_pending");
      box.appendChild(badge);
    } else {
      badge.className = "badge " + (audit.ok ? "ok" : "fail");
      badge.id = "audit-badge";
      badge.textContent = audit.ok ? t("audit_ok") : t("audit_fail");
      box.appendChild(badge);
      const list = document.createElement("ul");
      list.className = "checks";
      audit.checks.forEach(function (c) {
        const li = document.createElement("li");
        li.className = c.ok ? "ok" : "fail";
        li.textContent = (c.ok ? "✓ " : "✗ ") + auditName(c.name);
        list.appendChild(li);
      });
      audit.violations.forEach(function (v) {
        const li = document.createElement("li");
        li.className = "fail";
        li.textContent = v;
        list.appendChild(li);
      });
      box.appendChild(list);
      const when = document.createElement("p");
      when.className = "muted small";
      when.textContent = t("checked_at") + " " + zoned(audit.checked_at) +
        " · " + num(audit.entries) + " " + t("entries");
      box.appendChild(when);
    }
    const f = $("feed");
    f.className = "small " + (feed.ok ? "muted" : "fail");
    f.textContent = feed.ok ? t("feed_ok") + " · seq " + num(feed.seq) +
      (feed.behind ? " · " + t("feed_behind") + " " + num(feed.behind) : "")
      : t("feed_problem") + ": " + feed.problems.join("; ");
  }

  // ------------------------------------------------------------------- history
  let historyLoadedAt = 0;
  let historyStale = false;
  function maybeLoadHistory() {
    // After a change at most every HISTORY_MIN_GAP_MS, otherwise every HISTORY_REFRESH_MS.
    const age = Date.now() - historyLoadedAt;
    if ((historyStale && age >= HISTORY_MIN_GAP_MS) || age >= HISTORY_REFRESH_MS) loadHistory();
  }
  // A campaign of claimed vouchers: claimed, used and expired per day (the ledger's).
  function renderVouchers() {
    const rows = history.filter(function (r) { return r.vouchers_claimed !== undefined; });
    $("vouchers-card").hidden = rows.length === 0;
    const body = $("vouchers-history").querySelector("tbody");
    body.textContent = "";
    rows.forEach(function (r) {
      const tr = document.createElement("tr");
      cell(tr, r.date, "text");
      cell(tr, num(r.vouchers_claimed));
      cell(tr, num(r.vouchers_used));
      cell(tr, num(r.vouchers_expired));
      cell(tr, cny(r.vouchers_expired_fen));
      body.appendChild(tr);
    });
  }

  function loadHistory() {
    historyStale = false;
    historyLoadedAt = Date.now();
    getJSON("/dashboard/api/history" + q()).then(function (doc) {
      if (doc.campaign_id !== campaign) return;
      history = doc.days;
      renderHistory();
    }).catch(function () { /* the next refresh retries */ });
  }

  function renderHistory() {
    if (!history) return;
    const body = $("history").querySelector("tbody");
    body.textContent = "";
    history.forEach(function (r) {
      const tr = document.createElement("tr");
      tr.setAttribute("data-date", r.date);
      if (r.date === historyDay) tr.className = "selected";
      cell(tr, r.date, "text");
      cell(tr, r.state ? t("state_" + r.state, r.state) : "–", "text");
      cell(tr, r.released_fen === undefined ? "–" : cny(r.released_fen));
      cell(tr, r.granted_fen === undefined ? "–" : cny(r.granted_fen));
      cell(tr, hms(r.first_sold_out_at));
      cell(tr, num(r.holds));
      cell(tr, num(r.peak_grants_per_s));
      cell(tr, cny(r.gmv_fen));
      cell(tr, cny(r.net_subsidy_fen));
      cell(tr, times(r.leverage));
      tr.addEventListener("click", function () { showDay(r.date); });
      body.appendChild(tr);
    });
    renderVouchers();
    if (historyDay === null) {
      const started = history.filter(function (r) { return r.state && r.state !== "scheduled"; });
      if (started.length) showDay(started[started.length - 1].date);
    }
  }

  function showDay(day) {
    historyDay = day;
    $("history").querySelectorAll("tbody tr").forEach(function (tr) {
      tr.className = tr.getAttribute("data-date") === day ? "selected" : "";
    });
    $("history-burn-title").textContent = t("burn_of") + " " + day;
    getJSON("/dashboard/api/burn" + q("&date=" + day)).then(function (burn) {
      renderBurn($("history-burn"), burn, last ? last.now : null, 1280, 220);
    }).catch(function () { renderBurn($("history-burn"), null, null, 1280, 220); });
  }

  // ---------------------------------------------------------------- settlement
  function fillSettleDays() {
    const select = $("settle-date");
    select.textContent = "";
    const c = boot.campaigns.find(function (x) { return x.id === campaign; });
    c.days.forEach(function (d) {
      const o = document.createElement("option");
      o.value = d;
      o.textContent = d;
      select.appendChild(o);
    });
  }

  function selectSettleDay(day) {
    settleDay = day;
    const select = $("settle-date");
    if (!Array.prototype.some.call(select.options, function (o) { return o.value === day; })) {
      const o = document.createElement("option");
      o.value = day;
      o.textContent = day;
      select.appendChild(o);
    }
    select.value = day;
    $("settle-csv").href = "/dashboard/settlement.csv" + q("&date=" + day);
    $("settle-csv").setAttribute("download", "settlement-" + campaign + "-" + day + ".csv");
    loadSettlement(true);
  }

  let settleLoading = false;
  let settleLoadedAt = 0;
  let settleTimer = null;
  function loadSettlement(force) {
    // The settlement scans the ledger: one request in flight at most, and at most one per
    // SETTLEMENT_REFRESH_MS unless the day changed; a skipped change is fetched later.
    if (settleDay === null) return;
    const wait = SETTLEMENT_REFRESH_MS - (Date.now() - settleLoadedAt);
    if (settleLoading || (!force && wait > 0)) {
      if (!settleTimer) {
        settleTimer = setTimeout(function () {
          settleTimer = null;
          loadSettlement(true);
        }, Math.max(wait, 200));
      }
      return;
    }
    settleLoading = true;
    const day = settleDay;
    getJSON("/dashboard/api/settlement" + q("&date=" + day)).then(function (rep) {
      if (rep.date === settleDay && rep.campaign_id === campaign) renderSettlement(rep);
    }).catch(function () { /* retried on the next change */ }).then(function () {
      settleLoading = false;
      settleLoadedAt = Date.now();
    });
  }

  function renderSettlement(rep) {
    settlement = rep;
    const body = $("settlement").querySelector("tbody");
    body.textContent = "";
    rep.platforms.concat([Object.assign({ platform: "TOTAL" }, rep.totals)]).forEach(
      function (r) {
        const tr = document.createElement("tr");
        tr.setAttribute("data-platform", r.platform);
        if (r.platform === "TOTAL") tr.className = "total";
        cell(tr, platformName(r.platform), "text");
        cell(tr, num(r.count));
        cell(tr, cny(r.gmv_fen));
        cell(tr, cny(r.discount_fen));
        cell(tr, cny(r.clawback_fen));
        cell(tr, cny(r.net_subsidy_fen));
        body.appendChild(tr);
      });
  }

  // ---------------------------------------------------------------------- wire
  function chooseCampaign(cid) {
    campaign = cid;
    last = null;
    history = null;
    historyDay = null;
    settleDay = null;
    settlement = null;
    settleSeq = -1;
    fillSettleDays();
    connect();
    loadHistory();
  }

  const select = $("campaign");
  boot.campaigns.forEach(function (c) {
    const o = document.createElement("option");
    o.value = c.id;
    o.textContent = c.name + " (" + c.id + ")";
    select.appendChild(o);
  });
  select.addEventListener("change", function () { chooseCampaign(select.value); });
  $("settle-date").addEventListener("change", function () {
    settleSeq = -1;
    selectSettleDay($("settle-date").value);
  });
  $("lang").addEventListener("click", function () {
    i18n.toggle();
    if (last) render(last);
    renderHistory();
    if (historyDay) showDay(historyDay);
    if (settlement) renderSettlement(settlement);
  });
  setInterval(maybeLoadHistory, 500);
  i18n.apply();
  chooseCampaign(campaign);
})();
