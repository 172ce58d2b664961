/*
 * wslocust's WebSocket dashboard: one uPlot chart per group of columns of GET /ws/series
 * (wslocust/reporting/series.py), each with a compact table of its current and peak values.
 *
 * WsDashboard.live(root, url, period) polls the endpoint (only the points after the last one it has);
 * WsDashboard.show(root, data) draws a series once (the --html report). Either returns the dashboard,
 * which the page keeps as window.wsDashboard: .series ({t, columns}) is exactly what the charts plot,
 * .drawn counts the draws, .charts holds each chart's uPlot instance.
 */
(function (global) {
  "use strict";

  var COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    "#7f7f7f", "#bcbd22"];
  var TABLE_WIDTH = 230;
  var HEIGHT = 190;

  function format(value) {
    if (value === null || value === undefined) return "–";
    if (Number.isInteger(value)) return value.toLocaleString("en-US");
    if (Math.abs(value) >= 100) return Math.round(value).toLocaleString("en-US");
    if (Math.abs(value) >= 10) return value.toFixed(1);
    return value.toFixed(2).replace(/\.?0+$/, "") || "0";
  }

  function label(key) {
    return key.slice(key.indexOf("/") + 1);
  }

  function last(values) {
    for (var i = values.length - 1; i >= 0; i--) if (values[i] !== null) return values[i];
    return null;
  }

  function peak(values) {
    var top = null;
    values.forEach(function (value) { if (value !== null && (top === null || value > top)) top = value; });
    return top;
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function Dashboard(root, status) {
    this.root = root;
    this.statusElement = status || null;
    this.series = { t: [], columns: {} };
    this.latest = {};
    this.definitions = [];
    this.history = 3600;
    this.run = null;
    this.charts = {};
    this.panels = {};
    this.drawn = 0;
    var self = this;
    global.addEventListener("resize", function () { self.resize(); });
  }

  // Append the points of one answer of /ws/series (all of them, or those after the last one we have).
  Dashboard.prototype.merge = function (data) {
    if (data.run !== this.run) {
      // The run started over: its points all come after ours, so this answer holds all of them.
      this.series = { t: [], columns: {} };
      this.run = data.run;
    }
    var series = this.series;
    var before = series.t.length;
    var added = data.t.length;
    Object.keys(data.columns).forEach(function (key) {
      if (!series.columns[key]) series.columns[key] = new Array(before).fill(null);
    });
    Object.keys(series.columns).forEach(function (key) {
      var values = data.columns[key] || new Array(added).fill(null);
      Array.prototype.push.apply(series.columns[key], values);
    });
    Array.prototype.push.apply(series.t, data.t);
    var extra = series.t.length - data.history;
    if (extra > 0) {
      series.t.splice(0, extra);
      Object.keys(series.columns).forEach(function (key) { series.columns[key].splice(0, extra); });
    }
    this.definitions = data.charts;
    this.latest = data.latest || {};
    this.history = data.history;
  };

  Dashboard.prototype.keysOf = function (chart) {
    var prefix = chart.key + "/";
    return Object.keys(this.series.columns).filter(function (key) { return key.indexOf(prefix) === 0; });
  };

  Dashboard.prototype.panel = function (chart) {
    var panel = element("section", "ws-panel");
    panel.dataset.chart = chart.key;
    panel.appendChild(element("h2", "ws-panel-title", chart.title));
    var body = element("div", "ws-panel-body");
    var area = element("div", "ws-chart");
    var table = element("table", "ws-table");
    body.appendChild(area);
    body.appendChild(table);
    panel.appendChild(body);
    this.root.appendChild(panel);
    this.panels[chart.key] = { panel: panel, area: area, table: table, keys: null };
    return this.panels[chart.key];
  };

  Dashboard.prototype.width = function (entry) {
    return Math.max(240, entry.panel.clientWidth - TABLE_WIDTH - 28);
  };

  Dashboard.prototype.options = function (chart, keys, width) {
    return {
      width: width,
      height: HEIGHT,
      legend: { show: false },
      scales: { x: { time: true }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.1 : 1]; } } },
      axes: [{}, { size: 56, values: function (u, values) { return values.map(format); } }],
      series: [{}].concat(keys.map(function (key, index) {
        return { label: label(key), stroke: COLORS[index % COLORS.length], width: 1.5 };
      })),
    };
  };

  Dashboard.prototype.fillTable = function (entry, chart, keys) {
    var table = entry.table;
    var totals = chart.totals ? this.latest[chart.totals] || {} : null;
    var head = "<thead><tr><th></th><th>now</th><th>" + (totals ? "total" : "peak") + "</th></tr></thead>";
    table.innerHTML = head;
    var body = element("tbody");
    var columns = this.series.columns;
    if (!keys.length) {
      var row = element("tr");
      var cell = element("td", "ws-none", chart.key === "errors" ? "no errors" : "no figures yet");
      cell.colSpan = 3;
      row.appendChild(cell);
      body.appendChild(row);
    }
    keys.forEach(function (key, index) {
      var row = element("tr");
      row.dataset.key = key;
      var name = element("td", "ws-label", label(key));
      name.style.borderLeft = "4px solid " + COLORS[index % COLORS.length];
      row.appendChild(name);
      row.appendChild(element("td", "ws-value", format(last(columns[key]))));
      var other = totals ? totals[label(key)] : peak(columns[key]);
      row.appendChild(element("td", "ws-value", format(other === undefined ? null : other)));
      body.appendChild(row);
    });
    table.appendChild(body);
  };

  Dashboard.prototype.draw = function () {
    var self = this;
    this.definitions.forEach(function (chart) {
      var entry = self.panels[chart.key] || self.panel(chart);
      var keys = self.keysOf(chart);
      var data = [self.series.t].concat(keys.map(function (key) { return self.series.columns[key]; }));
      if (entry.keys === null || entry.keys.join("\n") !== keys.join("\n")) {
        if (self.charts[chart.key]) self.charts[chart.key].destroy();
        self.charts[chart.key] = new global.uPlot(self.options(chart, keys, self.width(entry)), data, entry.area);
        entry.keys = keys;
      } else {
        self.charts[chart.key].setData(data);
      }
      self.fillTable(entry, chart, keys);
    });
    var latest = this.latest;
    if (latest.state !== undefined) {
      this.status(latest.state + " · " + format(latest.users) + " users · " + format(latest.run_time) + " s · " +
        this.series.t.length + " points");
    }
    this.drawn += 1;
    this.root.dataset.drawn = String(this.drawn);
  };

  Dashboard.prototype.resize = function () {
    var self = this;
    Object.keys(this.charts).forEach(function (key) {
      self.charts[key].setSize({ width: self.width(self.panels[key]), height: HEIGHT });
    });
  };

  Dashboard.prototype.status = function (text) {
    if (this.statusElement) this.statusElement.textContent = text;
  };

  // Poll url every period ms; each answer holds the points after the last one drawn.
  Dashboard.live = function (root, url, period, status) {
    var dashboard = new Dashboard(root, status);
    function poll() {
      var t = dashboard.series.t;
      var since = t.length ? "?since=" + t[t.length - 1] : "";
      fetch(url + since, { cache: "no-store", credentials: "same-origin" })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) { dashboard.merge(data); dashboard.draw(); })
        .catch(function (error) { dashboard.status("no answer from Locust's web UI (" + error.message + ")"); })
        .finally(function () { setTimeout(poll, period); });
    }
    poll();
    return dashboard;
  };

  // Draw one series, once (the --html report, which works offline).
  Dashboard.show = function (root, data, status) {
    var dashboard = new Dashboard(root, status);
    dashboard.merge(data);
    dashboard.draw();
    return dashboard;
  };

  global.WsDashboard = Dashboard;
})(window);
