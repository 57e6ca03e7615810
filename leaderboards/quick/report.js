/* zgbench report: sortable and filterable tables, one task at a time, and the interactive
   plots (plotly.js, loaded beside this file). Everything works from disk: no server, no
   network. Sorting is tablesort's (vendored, tablesort.min.js); the row filter, the column
   toggle and the task picker are small enough that a library would be more code than this
   (tablesort sorts only, and the libraries that also filter, such as DataTables, restyle
   and page every table). */
(function () {
  "use strict";

  /* ---- tables ---------------------------------------------------------------------- */

  // Numbers sort by their full value (data-sort); blanks after every number ascending.
  // tablesort's comparators order descending (b before a) and reverse for ascending.
  function num(text) {
    var t = (text || "").trim();
    if (t === "" || t === "-" || t === "nan") return Infinity;
    if (t === "inf") return Infinity;
    if (t === "-inf") return -Infinity;
    var v = parseFloat(t);
    return isNaN(v) ? Infinity : v;
  }
  Tablesort.extend("float", function () { return false; }, function (a, b) {
    var x = num(a), y = num(b);
    return x === y ? 0 : (y > x ? 1 : -1);
  });

  function setUpTable(box) {
    var table = box.querySelector("table.data");
    if (!table) return;
    var filter = box.querySelector("input.filter");
    var count = box.querySelector(".count");
    var all = box.querySelector("input.allcols");
    var rows = Array.prototype.slice.call(table.tBodies[0] ? table.tBodies[0].rows : []);
    if (filter) {
      filter.addEventListener("input", function () {
        var terms = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
        var shown = 0;
        rows.forEach(function (tr) {
          var text = tr.textContent.toLowerCase();
          var keep = terms.every(function (t) { return text.indexOf(t) >= 0; });
          tr.classList.toggle("filtered", !keep);
          if (keep) shown += 1;
        });
        count.textContent = terms.length ? shown + " of " + rows.length + " rows" : "";
      });
    }
    if (all) {
      all.addEventListener("change", function () { box.classList.toggle("all", all.checked); });
    }
  }

  document.querySelectorAll("div.table").forEach(setUpTable);
  document.querySelectorAll("table.data").forEach(function (t) {
    if (t.tHead && t.tBodies.length) new Tablesort(t);
  });

  /* ---- plots ----------------------------------------------------------------------- */

  var PLOTS = JSON.parse(document.getElementById("plot-data").textContent);
  var COLOURS = JSON.parse(document.getElementById("plot-colours").textContent);
  var CONFIG = { responsive: true, displaylogo: false };
  var state = {};  // plot id -> {mode, ylog}

  function colour(name) { return COLOURS[name] || "#555"; }

  function fade(hex, alpha) {
    var n = parseInt(hex.slice(1), 16);
    return "rgba(" + (n >> 16 & 255) + "," + (n >> 8 & 255) + "," + (n & 255) + "," + alpha + ")";
  }

  function hidden(div) {  // legend entries the reader switched off, kept across re-draws
    var off = {};
    (div.data || []).forEach(function (t) {
      if (t.visible === "legendonly" && t.legendgroup) off[t.legendgroup] = true;
    });
    return off;
  }

  // The floor of a log axis: a decade below the smallest positive value drawn. Values at or
  // below zero (an exact optimum) are drawn there, as on the PNG's symlog axis.
  function logFloor(spec, mode) {
    var low = Infinity;
    spec.curves.forEach(function (c) {
      var d = c.series[mode];
      if (d) [d.m, d.lo, d.hi].forEach(function (ys) {
        ys.forEach(function (y) { if (y !== null && y > 0) low = Math.min(low, y); });
      });
    });
    spec.anchors.forEach(function (a) { if (a.y > 0) low = Math.min(low, a.y); });
    return isFinite(low) ? Math.pow(10, Math.floor(Math.log10(low)) - 1) : null;
  }

  function convergence(div, spec) {
    var s = state[div.dataset.plot];
    var mode = s.mode, off = hidden(div), traces = [], absent = [];
    var xmin = Infinity, xmax = -Infinity, ymin = Infinity, ymax = -Infinity;
    var floor = s.ylog ? logFloor(spec, mode) : null, floored = false;
    function shown(ys) {  // what is drawn: at the floor where a log axis has no room
      return floor === null ? ys : ys.map(function (y) {
        if (y !== null && y <= 0) { floored = true; return floor; }
        return y;
      });
    }
    spec.curves.forEach(function (c) {
      var d = c.series[mode];
      if (!d) { absent.push(c.name); return; }
      var vis = off[c.name] ? "legendonly" : true, col = colour(c.name);
      d.x.forEach(function (x) { if (x !== null) { xmin = Math.min(xmin, x); xmax = Math.max(xmax, x); } });
      var m = shown(d.m), lo = shown(d.lo), hi = shown(d.hi);
      [m, lo, hi].forEach(function (ys) {
        ys.forEach(function (y) {
          if (y !== null && (!s.ylog || y > 0)) { ymin = Math.min(ymin, y); ymax = Math.max(ymax, y); }
        });
      });
      var common = { x: d.x, mode: "lines", legendgroup: c.name, visible: vis };
      traces.push(Object.assign({}, common, { y: hi, line: { width: 0, shape: "hv", color: col },
        hoverinfo: "skip", showlegend: false }));
      traces.push(Object.assign({}, common, { y: lo, line: { width: 0, shape: "hv", color: col },
        fill: "tonexty", fillcolor: fade(col, 0.15), hoverinfo: "skip", showlegend: false }));
      traces.push(Object.assign({}, common, { y: m, name: c.name,
        line: { width: 1.8, shape: "hv", color: col },
        customdata: d.m.map(function (v, i) { return [v, d.lo[i], d.hi[i]]; }),
        hovertemplate: "<b>" + c.name + "</b><br>" + mode + ": %{x:.4g}<br>median: %{customdata[0]:.4g}" +
          "<br>quartiles: %{customdata[1]:.4g} to %{customdata[2]:.4g}<extra></extra>" }));
    });
    spec.anchors.forEach(function (a) {
      if (!isFinite(xmin)) return;
      var name = (a.name === "start" ? "start θ₀ " : "reference ") + a.y.toPrecision(3);
      var y = shown([a.y])[0];
      traces.push({ x: [xmin, xmax], y: [y, y], mode: "lines", name: name, legendgroup: name,
        visible: off[name] ? "legendonly" : true,
        line: { color: a.name === "start" ? "#666" : "#000", dash: a.name === "start" ? "dash" : "dot", width: 1.4 },
        hovertemplate: name + "<extra></extra>" });
      if (!s.ylog || y > 0) { ymin = Math.min(ymin, y); ymax = Math.max(ymax, y); }
    });
    var yaxis = { type: s.ylog ? "log" : "linear", title: { text: spec.metric + " (" +
      (spec.direction === "min" ? "lower" : "higher") + " is better)" }, exponentformat: "power" };
    var cut = spec.direction === "min" ? spec.ymax : spec.ymin;
    if (cut !== undefined && cut !== null && isFinite(ymin)) {  // diverged curves: view stops short
      var lo = spec.direction === "min" ? ymin : cut, hi = spec.direction === "min" ? cut : ymax;
      if (s.ylog) { lo = Math.log10(lo); hi = Math.log10(hi); }
      var pad = (hi - lo) * 0.04;
      yaxis.range = [lo - pad, hi + pad];
    }
    var words = [];
    if (absent.length) words.push("not drawn (no " + spec.titles[mode] + "): " + absent.join(", "));
    if (floored) words.push("values ≤ 0 drawn at " + floor.toExponential(0));
    var note = div.parentNode.querySelector(".plotnote");  // under the plot, off the tool bar
    if (note) note.textContent = words.length ? words.join("; ") + "." : "";
    return [traces, {
      margin: { l: 64, r: 8, t: 28, b: 48 }, hovermode: "closest",
      xaxis: { type: "log", title: { text: spec.titles[mode] }, exponentformat: "power", dtick: 1 },
      yaxis: yaxis, legend: { font: { size: 11 }, tracegroupgap: 0 },
      uirevision: mode + s.ylog }];
  }

  function ecdf(div, spec) {
    var off = hidden(div);
    var traces = spec.curves.map(function (c) {
      return { x: c.x, y: c.y, name: c.name, legendgroup: c.name, mode: "lines",
        visible: off[c.name] ? "legendonly" : true,
        line: { shape: "hv", color: colour(c.name), width: 1.8 },
        hovertemplate: "<b>" + c.name + "</b><br>%{x:.4g}: %{y:.3f} of (run, target) pairs<extra></extra>" };
    });
    return [traces, {
      margin: { l: 56, r: 8, t: 28, b: 48 }, hovermode: "closest",
      xaxis: { type: "log", title: { text: spec.xtitle }, exponentformat: "power", dtick: 1,
               range: [Math.log10(spec.xrange[0]), Math.log10(spec.xrange[1])] },
      yaxis: { title: { text: "fraction of (run, target) pairs reached" }, range: [0, 1.02] },
      legend: { font: { size: 11 }, tracegroupgap: 0 } }];
  }

  function heatmap(div, spec) {
    return [[{ type: "heatmap", z: spec.z, x: spec.names, y: spec.names, zmin: 0, zmax: 1,
      colorscale: "RdBu", texttemplate: "%{z:.2f}", textfont: { size: 10 },
      hovertemplate: "%{y} beats %{x}: %{z:.2f}<extra></extra>", xgap: 1, ygap: 1 }],
      { margin: { l: 110, r: 10, t: 10, b: 110 }, yaxis: { autorange: "reversed" },
        xaxis: { tickangle: -45 } }];
  }

  var KINDS = { convergence: convergence, ecdf: ecdf, heatmap: heatmap };

  function draw(div) {
    var spec = PLOTS[div.dataset.plot];
    if (!spec || !KINDS[spec.type]) return;
    var made = KINDS[spec.type](div, spec);
    Plotly.react(div, made[0], made[1], CONFIG);
    div.dataset.drawn = "1";
  }

  function buttons(box, id, spec) {
    function row(values, current, label, pick) {
      values.forEach(function (v) {
        var b = document.createElement("button");
        b.type = "button";
        b.textContent = label(v);
        b.dataset.value = String(v);
        b.classList.toggle("on", v === current);
        b.addEventListener("click", function () {
          pick(v);
          box.querySelectorAll("button").forEach(function (o) {
            if (o.parentNode === b.parentNode && o.dataset.group === b.dataset.group)
              o.classList.toggle("on", o === b);
          });
          draw(document.querySelector('div.plot[data-plot="' + id + '"]'));
        });
        b.dataset.group = label === String ? "mode" : "scale";
        box.appendChild(b);
      });
    }
    var s = state[id];
    row(spec.modes, s.mode, String, function (m) { s.mode = m; });
    var gap = document.createElement("span");
    gap.className = "sep";
    box.appendChild(gap);
    row([true, false], s.ylog, function (v) { return v ? "log y" : "linear y"; },
        function (v) { s.ylog = v; });
  }

  Object.keys(PLOTS).forEach(function (id) {
    var spec = PLOTS[id];
    if (spec.type !== "convergence") return;
    state[id] = { mode: spec.default || spec.modes[0], ylog: spec.ylog };
    var box = document.querySelector('div.modes[data-for="' + id + '"]');
    if (box) buttons(box, id, spec);
  });

  var plots = document.querySelectorAll("div.plot[data-plot]");
  if ("IntersectionObserver" in window) {  // draw a plot when it first comes into view
    var seen = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (e.isIntersecting && !e.target.dataset.drawn) { draw(e.target); seen.unobserve(e.target); }
      });
    }, { rootMargin: "400px" });
    plots.forEach(function (p) { seen.observe(p); });
  } else {
    plots.forEach(draw);
  }

  /* ---- one task at a time ---------------------------------------------------------- */

  var tasks = Array.prototype.slice.call(document.querySelectorAll("section.task"));
  var every = document.getElementById("all-tasks");

  function show(id, scroll) {
    var target = tasks.filter(function (t) { return t.id === id; })[0];
    if (!target) {
      if (document.querySelector("section.task.current")) return;
      target = tasks[0];
      scroll = false;
    }
    if (!target) return;
    tasks.forEach(function (t) { t.classList.toggle("current", t === target); });
    document.querySelectorAll("[data-task]").forEach(function (a) {
      a.classList.toggle("current", a.dataset.task === target.id);
    });
    if (scroll) target.scrollIntoView();
  }

  document.body.classList.add("one-task");
  show(location.hash.slice(1), true);
  window.addEventListener("hashchange", function () { show(location.hash.slice(1), true); });
  if (every) {
    every.addEventListener("change", function () {
      document.body.classList.toggle("one-task", !every.checked);
    });
  }
})();
