// 驾驶舱 charts: trend, categories, the district map with street bubbles (示意), indicator sparklines.
// Data comes from the JSON block the server rendered; ECharts is served locally (no CDN).
(function () {
  "use strict";
  function start() {
    var holder = document.getElementById("cockpit-data");
    if (!holder || !window.echarts) return;
    var data = JSON.parse(holder.textContent);
    var charts = [];
    function make(id) {
      var el = document.getElementById(id);
      if (!el) return null;
      var chart = echarts.init(el, null, { renderer: "canvas" });
      charts.push(chart);
      return chart;
    }
    function pct(v) { return v === null || v === undefined ? "—" : (100 * v).toFixed(1) + "%"; }

    var trend = make("chart-trend");
    if (trend) {
      trend.setOption({
        animation: false,
        tooltip: { trigger: "axis" },
        legend: { data: ["受理", "办结"], top: 0 },
        grid: { left: 40, right: 16, top: 30, bottom: 28 },
        xAxis: { type: "category", data: data.days.map(function (d) { return d.slice(5); }) },
        yAxis: { type: "value", minInterval: 1 },
        series: [
          { name: "受理", type: "line", data: data.received, areaStyle: { opacity: 0.15 } },
          { name: "办结", type: "line", data: data.completed }
        ]
      });
    }

    var cats = make("chart-categories");
    if (cats) {
      var top = data.categories.slice().reverse();
      cats.setOption({
        animation: false,
        tooltip: {},
        grid: { left: 90, right: 30, top: 8, bottom: 24 },
        xAxis: { type: "value", minInterval: 1 },
        yAxis: { type: "category", data: top.map(function (c) { return c.name; }) },
        series: [{ type: "bar", barMaxWidth: 26, data: top.map(function (c) { return c.value; }), itemStyle: { color: "#0b6bcb" },
                   label: { show: true, position: "right" } }]
      });
    }

    document.querySelectorAll("[data-spark]").forEach(function (el) {
      var card = data.cards[el.getAttribute("data-spark")];
      if (!card || card.values.length === 0) { el.textContent = "暂无历年数据"; el.className += " muted"; return; }
      var chart = echarts.init(el, null, { renderer: "canvas" });
      charts.push(chart);
      var series = [{ type: "line", data: card.values, symbolSize: 4, lineStyle: { color: card.colour },
                      itemStyle: { color: card.colour } }];
      if (card.target !== null) {
        series[0].markLine = { silent: true, symbol: "none", label: { show: false },
                               lineStyle: { type: "dashed", color: "#8c959f" }, data: [{ yAxis: card.target }] };
      }
      chart.setOption({
        animation: false,
        grid: { left: 2, right: 2, top: 4, bottom: 4 },
        tooltip: { trigger: "axis", confine: true },
        xAxis: { type: "category", show: false, data: card.periods },
        yAxis: { type: "value", show: false, scale: true },
        series: series
      });
    });

    var map = make("chart-map");
    var mapDone = Promise.resolve();
    if (map) {
      mapDone = fetch("/static/geo/xihu_district_gcj02.geojson")
        .then(function (r) { return r.json(); })
        .then(function (geo) {
          echarts.registerMap("xihu", geo);
          var points = data.map;
          var district = data.level === "district";
          var max = Math.max.apply(null, points.map(function (p) { return p.value[2]; }).concat([1]));
          map.setOption({
            animation: false,
            tooltip: {
              formatter: function (p) {
                if (!p.data || !p.data.name) return "西湖区";
                var d = p.data;
                return d.name + "（位置示意）<br>诉求 " + (d.received === null ? "—" : d.received) +
                  "<br>签收及时率 " + pct(d.response) + "<br>满意率 " + pct(d.satisfaction);
              }
            },
            visualMap: data.level === "district" ? {
              type: "piecewise", dimension: 3, seriesIndex: 0, left: 8, bottom: 8, itemWidth: 14, itemHeight: 10,
              pieces: [
                { gte: 0.95, lte: 1, label: "≥ 95%", color: "#2da44e" },
                { gte: 0.85, lt: 0.95, label: "85%–95%", color: "#d4a72c" },
                { gte: 0, lt: 0.85, label: "< 85%", color: "#cf222e" },
                { value: -1, label: "暂无评价", color: "#b0b7c3" }
              ]
            } : undefined,
            geo: { map: "xihu", roam: false, aspectScale: 0.9, top: 12, bottom: 12, itemStyle: { areaColor: "#eef3fb", borderColor: "#6b8ec9" },
                   emphasis: { disabled: true } },
            series: [{
              type: "scatter", coordinateSystem: "geo",
              data: points.map(function (p) {
                return { name: p.name, value: [p.value[0], p.value[1], p.value[2],
                         p.satisfaction === null ? -1 : p.satisfaction],
                         received: p.received, response: p.response, satisfaction: p.satisfaction, url: p.url, current: p.current,
                         itemStyle: district ? undefined : { color: p.current ? "#0b3d91" : "#b6c6e3" },
                         label: p.current ? { fontWeight: "bold", fontSize: 13, color: "#0b3d91" } : undefined };
              }),
              symbolSize: function (v, p) {
                if (!district) return p.data && p.data.current ? 20 : 9;
                return 12 + 34 * Math.sqrt(v[2] / max);
              },
              labelLayout: { hideOverlap: true },
              label: { show: true, formatter: "{b}", position: "right", fontSize: 11, color: "#24292f" },
              itemStyle: { opacity: 0.85 }
            }]
          });
          map.on("click", function (p) { if (p.data && p.data.url) window.location.href = p.data.url; });
        });
    }
    mapDone.catch(function () {}).then(function () { document.documentElement.setAttribute("data-cockpit-ready", "1"); });
    window.addEventListener("resize", function () { charts.forEach(function (c) { c.resize(); }); });
    window.addEventListener("beforeprint", function () { charts.forEach(function (c) { c.resize(); }); });
    document.querySelectorAll("select[data-autosubmit]").forEach(function (s) {
      s.addEventListener("change", function () { s.form.submit(); });
    });
    document.querySelectorAll("[data-print]").forEach(function (b) {
      b.addEventListener("click", function () { window.print(); });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
