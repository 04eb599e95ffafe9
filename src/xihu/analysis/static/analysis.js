/* Charts and the district map of the analysis page (研判分析). Data comes from #analysis-data. */
(function () {
  "use strict";
  function ready(fn) {
    if (document.readyState !== "loading") fn();
    else document.addEventListener("DOMContentLoaded", fn);
  }
  function pct(x) { return x === null || x === undefined ? "—" : (x * 100).toFixed(1) + "%"; }
  function chart(id, option) {
    var el = document.getElementById(id);
    if (!el || !window.echarts) return null;
    var c = echarts.init(el, null, { renderer: "canvas" });
    c.setOption(option);
    window.addEventListener("resize", function () { c.resize(); });
    return c;
  }
  ready(function () {
    var holder = document.getElementById("analysis-data");
    if (!holder || !window.echarts) return;
    var data = JSON.parse(holder.textContent);
    chart("chart-days", {
      tooltip: { trigger: "axis" },
      legend: { data: ["受理", "办结"] },
      grid: { left: 40, right: 16, top: 36, bottom: 30 },
      xAxis: { type: "category", data: data.days.map(function (d) { return d[0].slice(5); }) },
      yAxis: { type: "value", minInterval: 1 },
      series: [
        { name: "受理", type: "line", smooth: true, data: data.days.map(function (d) { return d[1]; }) },
        { name: "办结", type: "line", smooth: true, data: data.days.map(function (d) { return d[2]; }) }
      ]
    });
    var cats = data.categories.slice(0, 10).reverse();
    chart("chart-categories", {
      tooltip: {},
      grid: { left: 110, right: 30, top: 10, bottom: 24 },
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", data: cats.map(function (c) { return c[0]; }) },
      series: [{ type: "bar", data: cats.map(function (c) { return c[1]; }), itemStyle: { color: "#1677ff" } }]
    });
    chart("chart-channels", {
      tooltip: { trigger: "item", formatter: "{b}：{c} 件（{d}%）" },
      series: [{ type: "pie", radius: ["35%", "65%"], data: data.channels.map(function (c) { return { name: c[0], value: c[1] }; }) }]
    });
    if (data.areas.length) {
      chart("chart-areas", {
        tooltip: {
          trigger: "axis",
          formatter: function (p) {
            var a = data.areas[p[0].dataIndex];
            return a[0] + "<br>受理 " + a[1] + " 件<br>办结率 " + pct(a[2]) + "<br>满意率 " + pct(a[3]) + "<br>签收及时率 " + pct(a[4]);
          }
        },
        grid: { left: 40, right: 16, top: 16, bottom: 70 },
        xAxis: { type: "category", data: data.areas.map(function (a) { return a[0]; }), axisLabel: { rotate: 40 } },
        yAxis: { type: "value", minInterval: 1 },
        series: [{ type: "bar", data: data.areas.map(function (a) { return a[1]; }), itemStyle: { color: "#13c2c2" } }]
      });
    }
    var mapEl = document.getElementById("chart-map");
    if (mapEl && data.map) {
      fetch("/static/geo/xihu_district_gcj02.geojson").then(function (r) { return r.json(); }).then(function (geo) {
        echarts.registerMap("xihu", geo);
        var max = Math.max.apply(null, data.map.streets.map(function (s) { return s.value[2]; }).concat([1]));
        var c = chart("chart-map", {
          tooltip: {
            trigger: "item",
            formatter: function (p) {
              if (p.seriesName === "热点预警") return p.name + "<br>近 7 天 " + p.value[2] + " 件";
              return p.name + "（示意位置）<br>受理 " + (p.value ? p.value[2] : 0) + " 件";
            }
          },
          geo: { map: "xihu", roam: true, itemStyle: { areaColor: "#eef4ff", borderColor: "#5b8ff9" }, emphasis: { disabled: true } },
          series: [
            {
              name: "街道受理量（示意）", type: "scatter", coordinateSystem: "geo", data: data.map.streets,
              symbolSize: function (v) { return 10 + 40 * Math.sqrt(v[2] / max); },
              itemStyle: { color: "rgba(22,119,255,0.55)", borderColor: "#1677ff" },
              label: { show: true, formatter: "{b}", position: "right", fontSize: 11 }
            },
            {
              name: "热点预警", type: "effectScatter", coordinateSystem: "geo", data: data.map.hotspots,
              symbolSize: 12, itemStyle: { color: "#f5222d" }
            }
          ]
        });
        if (c) {
          c.on("click", function (p) {
            if (p.seriesName === "热点预警" && p.data) window.location.href = "/staff/warnings/" + p.data.id;
            else if (p.data && p.data.id) {
              var u = new URL(window.location.href);
              u.searchParams.set("area", p.data.id);
              window.location.href = u.toString();
            }
          });
        }
      });
    }
  });
})();
