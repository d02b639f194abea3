// Small hand-drawn SVG charts: a gauge, a step line (burn-down), bars, horizontal bars.
// No library: a few functions are all the page needs, and nothing loads from elsewhere.
"use strict";

window.LIJIAN_CHARTS = (function () {
  const NS = "http://www.w3.org/2000/svg";

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const k in attrs) node.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(node);
    return node;
  }
  function text(parent, x, y, s, cls, anchor) {
    const node = el("text", { x: x, y: y, class: cls || "", "text-anchor": anchor || "start" },
                    parent);
    node.textContent = s;
    return node;
  }
  function clear(svg) {
    while (svg.firstChild) svg.removeChild(svg.firstChild);
  }

  // A half-circle gauge: the share of `value` in `max`, coloured by how much is left.
  function gauge(svg, value, max, label, sublabel) {
    clear(svg);
    const cx = 120, cy = 120, r = 95, w = 18;
    const share = max > 0 ? Math.max(0, Math.min(1, value / max)) : 0;
    function arc(from, to, cls) {
      const a0 = Math.PI * (1 - from), a1 = Math.PI * (1 - to);
      const x0 = cx + r * Math.cos(a0), y0 = cy - r * Math.sin(a0);
      const x1 = cx + r * Math.cos(a1), y1 = cy - r * Math.sin(a1);
      el("path", { d: "M" + x0 + " " + y0 + " A" + r + " " + r + " 0 0 1 " + x1 + " " + y1,
                   class: cls, "stroke-width": w, fill: "none" }, svg);
    }
    arc(0, 1, "gauge-track");
    if (share > 0) {
      arc(0, Math.max(share, 0.002), share > 0.3 ? "gauge-ok" : share > 0.1 ? "gauge-warn" :
          "gauge-low");
    }
    text(svg, cx, cy - 28, label, "gauge-value", "middle");
    text(svg, cx, cy - 6, sublabel, "gauge-sub", "middle");
  }

  // A step line of (x, y) points over [x0, x1] × [0, yMax]; each point holds until the
  // next. `xLabel(x)` names ticks every `tick` units of x.
  function stepLine(svg, points, opts) {
    clear(svg);
    const W = opts.width, H = opts.height, L = 64, R = 24, T = 10, B = 24;
    const x0 = opts.x0, x1 = Math.max(opts.x1, opts.x0 + 1), yMax = Math.max(opts.yMax, 1);
    const sx = function (x) { return L + (W - L - R) * (x - x0) / (x1 - x0); };
    const sy = function (y) { return T + (H - T - B) * (1 - y / yMax); };
    for (let i = 0; i <= 4; i++) {
      const y = yMax * i / 4;
      el("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: "grid" }, svg);
      text(svg, L - 6, sy(y) + 4, opts.yLabel(y), "axis", "end");
    }
    for (let x = x0; x <= x1; x += opts.tick) {
      el("line", { x1: sx(x), x2: sx(x), y1: T, y2: H - B, class: "grid" }, svg);
      text(svg, sx(x), H - 6, opts.xLabel(x), "axis", "middle");
    }
    if (!points.length) {
      text(svg, (L + W - R) / 2, H / 2, opts.empty, "axis", "middle");
      return;
    }
    const clampX = function (x) { return Math.max(x0, Math.min(x1, x)); };
    let d = "M" + sx(clampX(points[0][0])) + " " + sy(points[0][1]);
    for (let i = 1; i < points.length; i++) {
      d += " H" + sx(clampX(points[i][0])) + " V" + sy(points[i][1]);
    }
    // A point stands for a whole minute: the line runs at least to that minute's end.
    const end = clampX(Math.max(points[points.length - 1][0] + 1, opts.xEnd));
    d += " H" + sx(end);
    el("path", { d: d + " V" + sy(0) + " H" + sx(clampX(points[0][0])) + " Z", class: "area" },
       svg);
    el("path", { d: d, class: "line", fill: "none" }, svg);
    el("circle", { cx: sx(end), cy: sy(points[points.length - 1][1]), r: 3.5, class: "dot" },
       svg);
  }

  // Vertical bars of counts (grants per second), newest on the right.
  function bars(svg, values, opts) {
    clear(svg);
    const W = opts.width, H = opts.height, L = 30, B = 16, T = 6;
    const max = Math.max(1, Math.max.apply(null, values));
    const bw = (W - L) / Math.max(1, values.length);
    el("line", { x1: L, x2: W, y1: H - B, y2: H - B, class: "grid" }, svg);
    text(svg, L - 4, T + 8, String(max), "axis", "end");
    text(svg, L - 4, H - B, "0", "axis", "end");
    values.forEach(function (v, i) {
      if (!v) return;
      const h = (H - B - T) * v / max;
      el("rect", { x: L + i * bw, y: H - B - h, width: Math.max(1, bw - 1), height: h,
                   class: "bar" }, svg);
    });
    text(svg, L, H - 2, opts.leftLabel, "axis", "start");
    text(svg, W, H - 2, opts.rightLabel, "axis", "end");
  }

  // Horizontal bars as HTML rows: [{label, value, text}], largest first.
  function hbars(div, items, emptyText) {
    div.textContent = "";
    if (!items.length) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = emptyText;
      div.appendChild(p);
      return;
    }
    const max = Math.max.apply(null, items.map(function (x) { return Math.abs(x.value); }));
    items.forEach(function (item) {
      const row = document.createElement("div");
      row.className = "hbar";
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = item.label;
      const track = document.createElement("span");
      track.className = "track";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = (max > 0 ? 100 * Math.abs(item.value) / max : 0).toFixed(1) + "%";
      track.appendChild(fill);
      const val = document.createElement("span");
      val.className = "value";
      val.textContent = item.text;
      row.appendChild(name);
      row.appendChild(track);
      row.appendChild(val);
      div.appendChild(row);
    });
  }

  return { gauge: gauge, stepLine: stepLine, bars: bars, hbars: hbars };
})();
