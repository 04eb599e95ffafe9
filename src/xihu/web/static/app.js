/* 民呼我为·西湖码 — small progressive enhancements; every page works without it. */
(function () {
  "use strict";
  var csrfMeta = document.querySelector('meta[name="csrf-token"]');
  var CSRF = csrfMeta ? csrfMeta.getAttribute("content") : "";

  function ready(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  // Street -> community: only show the communities of the chosen street.
  function filterCommunities(street) {
    var target = document.getElementById(street.getAttribute("data-community-target"));
    if (!target) return;
    var groups = target.querySelectorAll("optgroup");
    groups.forEach(function (g) {
      var show = !street.value || g.getAttribute("data-street") === street.value;
      g.hidden = !show;
      g.disabled = !show;
    });
    var chosen = target.options[target.selectedIndex];
    if (chosen && chosen.parentNode.disabled) target.value = "";
  }

  // Photos: preview and limit to data-max-files.
  function previewPhotos(input) {
    var box = document.getElementById("photo-preview");
    if (!box) return;
    box.textContent = "";
    var max = parseInt(input.getAttribute("data-max-files") || "4", 10);
    var files = Array.prototype.slice.call(input.files || []);
    if (files.length > max) {
      var warn = document.createElement("span");
      warn.className = "warn";
      warn.textContent = "最多上传 " + max + " 张照片，请重新选择";
      box.appendChild(warn);
      input.value = "";
      return;
    }
    files.forEach(function (f) {
      if (!/^image\//.test(f.type)) return;
      var img = document.createElement("img");
      img.alt = f.name;
      img.src = URL.createObjectURL(f);
      box.appendChild(img);
    });
  }

  // File inputs: a Chinese button and the chosen file names, whatever the language of the browser (an
  // English-locale browser would say "Choose File"). Without this script the native control shows.
  function filePicker(input) {
    var box = document.createElement("span"), button = document.createElement("span");
    var names = document.createElement("span");
    box.className = "file-pick";
    button.className = "btn btn-ghost btn-sm file-pick-button";
    button.setAttribute("aria-hidden", "true");
    button.textContent = input.getAttribute("data-pick-label") || "选择文件";
    names.className = "file-pick-names";
    input.parentNode.insertBefore(box, input);
    box.appendChild(input);
    box.appendChild(button);
    box.appendChild(names);
    function show() {
      var files = Array.prototype.map.call(input.files || [], function (f) { return f.name; });
      names.textContent = files.length === 0 ? "未选择文件"
        : files.length === 1 ? files[0] : "已选 " + files.length + " 个：" + files.join("、");
    }
    input.addEventListener("change", show);
    if (input.form) input.form.addEventListener("reset", function () { setTimeout(show, 0); });
    show();
  }

  // SLA countdowns tick every 30 seconds.
  function tickDue() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-due"));
      if (isNaN(due)) return;
      var secs = (due - now) / 1000, mins = Math.floor(Math.abs(secs) / 60), amount;
      amount = mins >= 120 ? Math.floor(mins / 60) + " 小时 " + (mins % 60) + " 分"
        : mins === 0 ? Math.floor(Math.abs(secs)) + " 秒" : mins + " 分";
      el.textContent = (secs < 0 ? "已超时 " : "剩余 ") + amount;
      el.classList.toggle("due-over", secs < 0);
      el.classList.toggle("due-ok", secs >= 0);
    });
  }

  // Import: post the file to the JSON API and poll the job every second.
  function api(method, url, body) {
    return fetch(url, {
      method: method, body: body, credentials: "same-origin",
      headers: { "X-CSRF-Token": CSRF, "Accept": "application/json" }
    }).then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw new Error((data.error && data.error.message) || ("错误 " + r.status));
        return data;
      });
    });
  }

  function showJob(job) {
    var box = document.getElementById("import-progress");
    box.hidden = false;
    document.getElementById("import-file").textContent = job.filename;
    var pct = job.total ? Math.round(100 * job.processed / job.total) : 0;
    var bar = document.getElementById("import-bar");
    bar.style.width = pct + "%";
    var finished = job.status === "finished" || job.status === "failed";
    bar.classList.toggle("done", finished);
    var label = { queued: "排队中", running: "导入中", finished: "已完成", failed: "失败" }[job.status] || job.status;
    document.getElementById("import-status").textContent =
      label + "：已处理 " + job.processed + " / " + job.total + " 行，新建 " + job.created_count +
      " 件，跳过 " + job.skipped_count + " 件，错误 " + job.error_count + " 行" +
      (job.hint ? "。" + job.hint : "");
    var errBox = document.getElementById("import-errors");
    errBox.textContent = "";
    if (job.errors_csv) {
      // the progress lists the first rows only; the file has every one, to fix and import again
      var more = document.createElement("p");
      var link = document.createElement("a");
      link.href = job.errors_csv;
      link.textContent = "下载全部错误行（CSV，" + job.error_count + " 行）";
      link.setAttribute("download", "");
      link.setAttribute("data-testid", "import-errors-csv");
      more.appendChild(link);
      if (job.error_count > job.errors.length) {
        more.appendChild(document.createTextNode("　下表仅列出前 " + job.errors.length + " 行"));
      }
      errBox.appendChild(more);
    }
    if (job.errors.length) {
      var table = document.createElement("table");
      table.className = "table import-errors";
      var head = table.insertRow();
      ["行号", "错误"].forEach(function (t) { var th = document.createElement("th"); th.textContent = t; head.appendChild(th); });
      job.errors.forEach(function (e) {
        var tr = table.insertRow();
        tr.insertCell().textContent = e.row !== undefined && e.row !== null ? e.row : "";
        tr.insertCell().textContent = (e.ref ? e.ref + "：" : "") + (e.message || e.error || JSON.stringify(e));
      });
      errBox.appendChild(table);
    }
    return finished;
  }

  // the upload goes by fetch, so the page stays: once the import has ended, the next file may go
  function importReady() {
    var btn = document.querySelector("#import-form button[type=submit]");
    if (btn) setTimeout(function () { btn.disabled = false; }, 0);
  }

  function poll(id) {
    api("GET", "/api/imports/" + id).then(function (job) {
      if (showJob(job)) importReady();
      else setTimeout(function () { poll(id); }, 1000);
    }).catch(function (e) {
      document.getElementById("import-status").textContent = "查询进度失败：" + e.message;
      importReady();
    });
  }

  // Report and hotline forms: while the citizen (or the operator on the phone) writes, show similar appeals
  // of the last 7 days nearby (debounced).
  function similarHint(form, box) {
    var desc = form.querySelector('textarea[name="description"]');
    if (!desc || !window.fetch || !window.URLSearchParams) return;
    var field = desc.closest("label") || desc;
    field.insertAdjacentElement("afterend", box); // directly under the description
    var timer = null, seq = 0;
    function value(name) {
      var el = form.querySelector('[name="' + name + '"]');
      return el && el.value ? el.value : "";
    }
    function show(items) {
      box.textContent = "";
      if (!items.length) { box.hidden = true; return; }
      var head = document.createElement("strong");
      head.textContent = "近 7 天附近已有类似反映：";
      box.appendChild(head);
      var list = document.createElement("ul");
      items.forEach(function (it) {
        var li = document.createElement("li");
        li.textContent = "「" + it.title + "」 " + it.state_label + " · " + it.created_on;
        list.appendChild(li);
      });
      box.appendChild(list);
      var tail = document.createElement("small");
      tail.textContent = box.getAttribute("data-similar-tail") || "（可在受理后关注进度）";
      box.appendChild(tail);
      box.hidden = false;
    }
    function check() {
      var text = (value("title") + " " + desc.value).trim();
      var params = new URLSearchParams();
      ["place_code", "street_id", "community_id"].forEach(function (n) {
        if (value(n)) params.set(n, value(n));
      });
      if (desc.value.trim().length < 10 || !params.toString()) { seq++; show([]); return; }
      params.set("text", text.slice(0, 2000));
      var mine = ++seq;
      fetch(box.getAttribute("data-similar-url") + "?" + params.toString(), {
        credentials: "same-origin", headers: { "Accept": "application/json" }
      }).then(function (r) { return r.ok ? r.json() : []; })
        .then(function (items) { if (mine === seq) show(items || []); })
        .catch(function () { if (mine === seq) show([]); });
    }
    function later() { clearTimeout(timer); timer = setTimeout(check, 600); }
    desc.addEventListener("input", later);
    ["street_id", "community_id"].forEach(function (n) {
      var el = form.querySelector('[name="' + n + '"]');
      if (el) el.addEventListener("change", later);
    });
    if (desc.value.trim().length >= 10) later();
  }

  ready(function () {
    document.querySelectorAll("[data-similar-url]").forEach(function (box) {
      var form = box.closest("form");
      if (form) similarHint(form, box);
    });
    document.querySelectorAll("select[data-community-target]").forEach(function (s) {
      filterCommunities(s);
      s.addEventListener("change", function () { filterCommunities(s); });
    });
    document.querySelectorAll("input[type=file][data-max-files]").forEach(function (i) {
      i.addEventListener("change", function () { previewPhotos(i); });
    });
    // after the photo check, which may empty the input
    document.querySelectorAll("input[type=file]").forEach(filePicker);
    document.querySelectorAll(".check-all").forEach(function (c) {
      c.addEventListener("change", function () {
        var form = c.closest("form");
        form.querySelectorAll('input[name="' + c.getAttribute("data-target") + '"]').forEach(function (b) { b.checked = c.checked; });
      });
    });
    // Avoid double submits: disable the button once the form is on its way.
    document.querySelectorAll("form[method=post]").forEach(function (f) {
      f.addEventListener("submit", function (ev) {
        var btn = ev.submitter;
        if (!btn || btn.name) return; // keep name/value buttons (batch, approve) intact
        setTimeout(function () {
          btn.disabled = true;
          if (btn.getAttribute("data-busy-text")) btn.textContent = btn.getAttribute("data-busy-text");
        }, 0);
      });
    });
    document.querySelectorAll("[data-print]").forEach(function (b) {
      b.addEventListener("click", function () { window.print(); });
    });
    if (document.querySelector("[data-due]")) { tickDue(); setInterval(tickDue, 5000); }

    // Browser geolocation is WGS84, which is what the platform stores.
    document.querySelectorAll("[data-geolocate]").forEach(function (btn) {
      var box = btn.closest(".geo-field");
      var status = box.querySelector("[data-geo-status]");
      if (!navigator.geolocation) { btn.hidden = true; return; }
      btn.addEventListener("click", function () {
        status.textContent = "正在定位…";
        navigator.geolocation.getCurrentPosition(function (pos) {
          var lat = pos.coords.latitude.toFixed(6), lon = pos.coords.longitude.toFixed(6);
          box.querySelector("input[name=lat]").value = lat;
          box.querySelector("input[name=lon]").value = lon;
          status.textContent = "已附上位置（" + lat + ", " + lon + "）";
        }, function () {
          status.textContent = "无法获取位置，请填写详细地址";
        }, { enableHighAccuracy: true, timeout: 10000, maximumAge: 60000 });
      });
    });

    // Models page: while a retraining job runs, look every 2 s and reload once it has ended.
    var training = document.querySelector("[data-training-job]");
    if (training && window.fetch) {
      var watch = function () {
        api("GET", "/api/dispatch/training-jobs/" + training.getAttribute("data-training-job")).then(function (job) {
          if (job.status === "finished" || job.status === "failed") window.location.reload();
          else setTimeout(watch, 2000);
        }).catch(function () { setTimeout(watch, 5000); });
      };
      setTimeout(watch, 2000);
    }

    var importForm = document.getElementById("import-form");
    var progress = document.getElementById("import-progress");
    if (progress && progress.getAttribute("data-job")) poll(progress.getAttribute("data-job"));
    if (importForm && window.fetch && window.FormData) {
      importForm.addEventListener("submit", function (ev) {
        ev.preventDefault();
        var fd = new FormData();
        fd.append("file", importForm.querySelector("input[type=file]").files[0]);
        document.getElementById("import-progress").hidden = false;
        document.getElementById("import-status").textContent = "正在上传…";
        api("POST", "/api/imports", fd).then(function (job) {
          showJob(job);
          poll(job.id);
        }).catch(function (e) {
          document.getElementById("import-status").textContent = "导入失败：" + e.message;
          importReady();
        });
      });
    }
  });
})();
