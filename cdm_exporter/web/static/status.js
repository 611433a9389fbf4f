// cdm-exporter status page: keeps the server-rendered page current from its JSON twin
// (/api/v1/jobs) and filters, sorts and paginates the job table in the browser.
// The rules and the markup are those of cdm_exporter/web/status_page.py; keep the two in step.
// Every API string reaches the page through textContent or setAttribute, never as HTML.
(function () {
  "use strict";

  var body = document.body;
  // from the origin: a page opened as http://user:pass@host/ has the credentials in its own URL,
  // and fetch() refuses a URL that carries them (the browser still sends the cached ones)
  var API = location.origin + body.getAttribute("data-api");
  var REFRESH_MS = Number(body.getAttribute("data-refresh")) * 1000;
  var PAGE_ROWS = Number(body.getAttribute("data-page-rows"));
  var GROUPS = ["failed", "active", "other", "succeeded"];
  var DEFAULT_SORT = "status";
  var EN_DASH = "\u2013";

  function lower(text) { return text.toLowerCase(); }

  // sort key -> [column heading, the value a job is ordered by (null sorts last either way)]
  var SORTS = {
    target: ["Target", function (j) { return lower(j.target); }],
    cluster: ["Cluster", function (j) { return lower(j.cluster_name); }],
    name: ["Job", function (j) { return lower(j.name); }],
    status: ["Status", function (j) { return [GROUPS.indexOf(j.status_group), j.status]; }],
    progress: ["Progress", function (j) { return j.progress_percent; }],
    rows: ["Rows", function (j) { return j.rows_written; }],
    bytes: ["Bytes", function (j) { return j.bytes_written; }],
    last_success: ["Last success", function (j) { return j.last_success_at; }],
    refreshed: ["Refreshed", function (j) { return j.refreshed_at; }]
  };

  var state = { data: null, view: parseView(location.search), open: {}, failure: null, fetchedAt: null };
  var refreshes = 0;

  // --- the view: what the query string asks for --------------------------------------------------

  function parseView(search) {
    var query = new URLSearchParams(search);
    var sort = query.get("sort") || DEFAULT_SORT;
    if (!Object.prototype.hasOwnProperty.call(SORTS, sort.replace(/^-/, ""))) { sort = DEFAULT_SORT; }
    var page = parseInt(query.get("page") || "1", 10);
    return {
      statuses: query.getAll("status").filter(function (s) { return s !== ""; }),
      q: (query.get("q") || "").trim().slice(0, 200),
      sort: sort,
      page: isNaN(page) || page < 1 ? 1 : page
    };
  }

  function href(view, change) {
    var v = Object.assign({}, view, change || {});
    var query = new URLSearchParams();
    v.statuses.forEach(function (s) { query.append("status", s); });
    if (v.q) { query.append("q", v.q); }
    if (v.sort !== DEFAULT_SORT) { query.append("sort", v.sort); }
    if (v.page !== 1) { query.append("page", String(v.page)); }
    var text = query.toString().replace(/\+/g, "%20");
    return text ? "?" + text : "/";
  }

  function compare(a, b) {
    if (Array.isArray(a)) {
      for (var i = 0; i < a.length; i++) {
        var c = compare(a[i], b[i]);
        if (c !== 0) { return c; }
      }
      return 0;
    }
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function select(jobs, view) {
    var needle = lower(view.q);
    var chosen = jobs.filter(function (j) {
      return (view.statuses.length === 0 || view.statuses.indexOf(j.status) >= 0) &&
        (!needle || lower(j.name).indexOf(needle) >= 0 || lower(j.cluster_name).indexOf(needle) >= 0 ||
         lower(j.target).indexOf(needle) >= 0);
    });
    var key = SORTS[view.sort.replace(/^-/, "")][1];
    var sign = view.sort.charAt(0) === "-" ? -1 : 1;
    // stable sorts: ties keep the data's order (target, cluster, name); empty values stay last
    var present = chosen.filter(function (j) { return key(j) !== null; });
    present.sort(function (a, b) { return sign * compare(key(a), key(b)); });
    var ordered = present.concat(chosen.filter(function (j) { return key(j) === null; }));
    var pages = Math.max(1, Math.ceil(ordered.length / PAGE_ROWS));
    var page = Math.min(view.page, pages);
    return {
      rows: ordered.slice((page - 1) * PAGE_ROWS, page * PAGE_ROWS),
      matching: ordered.length, page: page, pages: pages
    };
  }

  // --- formatting ----------------------------------------------------------------------------------

  function node(tag, attrs) {
    var element = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (attrs[name] !== null && attrs[name] !== undefined) { element.setAttribute(name, attrs[name]); }
    });
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) { continue; }
      element.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return element;
  }

  function epoch(stamp) { return Date.parse(stamp) / 1000; }

  function ago(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    if (seconds < 60) { return seconds + " s ago"; }
    if (seconds < 3600) { return Math.floor(seconds / 60) + " min ago"; }
    if (seconds < 48 * 3600) { return Math.floor(seconds / 3600) + " h ago"; }
    return Math.floor(seconds / 86400) + " d ago";
  }

  function exact(stamp) { return stamp.replace("T", " ").replace("Z", " UTC"); }

  function when(stamp, now, missing, missingTitle) {
    if (stamp === null) { return node("span", { "class": "muted", title: missingTitle }, missing); }
    return node("time", { datetime: stamp, title: exact(stamp) }, ago(epoch(now) - epoch(stamp)));
  }

  function count(value) { return value === null ? EN_DASH : value.toLocaleString("en-US"); }

  function bytes(value) {
    if (value === null) { return EN_DASH; }
    var size = value;
    var units = ["B", "KiB", "MiB", "GiB", "TiB"];
    for (var i = 0; i < units.length; i++) {
      if (size < 1024) { return i === 0 ? value + " B" : size.toFixed(1) + " " + units[i]; }
      size /= 1024;
    }
    return size.toFixed(1) + " PiB";
  }

  function progress(job) {
    if (job.status_group !== "active") { return null; }
    if (job.progress_percent === null) {
      return node("span", { "class": "muted", title: "CDM reports no progress for this run" }, "running");
    }
    var whole = Math.max(0, Math.min(100, Math.floor(job.progress_percent)));
    var bar = node("span", {
      "class": "bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
      "aria-valuenow": String(whole)
    }, node("span", { "class": "fill w" + whole }));
    var wrapper = document.createDocumentFragment();
    wrapper.appendChild(bar);
    wrapper.appendChild(document.createTextNode(" "));
    wrapper.appendChild(node("span", { "class": "pct" }, whole + "%"));
    return wrapper;
  }

  function jobKey(job) { return [job.target, job.cluster_id, job.name].join("\u0000"); }

  function error(job) {
    if (job.error_summary === null) { return null; }
    var shown = node("span", { "class": "error-text clamp" }, job.error_summary || "(no summary)");
    if (!job.error_details) { return shown; }
    var details = node("details", { "data-key": jobKey(job) },
      node("summary", { title: "error details" }, shown), node("pre", {}, job.error_details));
    details.open = Boolean(state.open[jobKey(job)]);
    return details;
  }

  function jobRow(job, now) {
    var rowsTitle = "read " + count(job.rows_read) + ", written " + count(job.rows_written);
    var bytesTitle = "read " + count(job.bytes_read) + " bytes, written " + count(job.bytes_written) + " bytes";
    return node("tr", { "class": "job g-" + job.status_group },
      node("td", { "class": "target" }, job.target),
      node("td", { "class": "cluster", title: job.cluster_id }, job.cluster_name),
      node("td", { "class": "name" }, job.name),
      node("td", {}, node("span", { "class": "status s-" + job.status_group }, job.status)),
      node("td", { "class": "progress" }, progress(job)),
      node("td", { "class": "num", title: rowsTitle }, count(job.rows_written)),
      node("td", { "class": "num", title: bytesTitle }, bytes(job.bytes_written)),
      node("td", {}, when(job.last_success_at, now, "none seen", "no successful run known")),
      node("td", {}, when(job.refreshed_at, now, "not yet", "the status so far comes from the job list only")),
      node("td", { "class": "error" }, error(job)));
  }

  function stateWord(value, up, down, unknown) {
    if (value === true) { return node("span", { "class": "state ok" }, up); }
    if (value === false) { return node("span", { "class": "state bad" }, down); }
    return node("span", { "class": "state unknown" }, unknown);
  }

  // --- rendering -----------------------------------------------------------------------------------

  function replaceChildren(parent, children) {
    while (parent.firstChild) { parent.removeChild(parent.firstChild); }
    children.forEach(function (child) { parent.appendChild(child); });
  }

  function renderProblems(data) {
    replaceChildren(document.getElementById("problems"), data.problems.map(function (p) {
      var item = node("li", { "class": "problem p-" + p.severity }, p.message);
      if (p.detail) { item.appendChild(node("br")); item.appendChild(node("span", { "class": "detail" }, p.detail)); }
      return item;
    }));
  }

  function renderCounts(data, view) {
    var total = 0;
    Object.keys(data.counts).forEach(function (s) { total += data.counts[s]; });
    var entries = [["all", "all", [], total, view.statuses.length === 0]];
    Object.keys(data.counts).forEach(function (status) {
      var group = (data.jobs.find(function (j) { return j.status === status; }) || {}).status_group || "other";
      entries.push([group, status, [status], data.counts[status],
        view.statuses.length === 1 && view.statuses[0] === status]);
    });
    replaceChildren(document.getElementById("counts"), entries.map(function (entry) {
      var link = node("a", {
        "class": "count s-" + entry[0], href: href(view, { statuses: entry[2], page: 1 }),
        "aria-current": entry[4] ? "true" : null
      }, entry[1] + " ", node("b", {}, entry[3].toLocaleString("en-US")));
      return node("li", {}, link);
    }));
  }

  function renderTargets(data) {
    var table = document.getElementById("targets");
    Array.prototype.slice.call(table.tBodies).forEach(function (tbody) { table.removeChild(tbody); });
    data.targets.forEach(function (t) {
      var budget = Object.keys(t.budget_remaining).map(function (p) { return p + " " + t.budget_remaining[p]; });
      var jobs = t.clusters.reduce(function (sum, c) { return sum + c.jobs; }, 0);
      var detail = node("td", { "class": "detail" }, t.error ? t.error + " " : null,
        node("span", { "class": "muted" }, "API budget left: " + budget.join(", ")));
      var head = node("tr", { "class": "target" },
        node("th", { scope: "row" }, node("a", { href: "/probe?target=" + encodeURIComponent(t.name) }, t.name),
          " ", node("small", {}, t.region + " \u00b7 " + t.project_id)),
        node("td", {}, stateWord(t.up, "up", "DOWN", "not read yet")),
        node("td", {}), node("td", { "class": "num" }, jobs.toLocaleString("en-US")), detail);
      var rows = t.clusters.map(function (c) {
        var status = c.status || "?";
        return node("tr", { "class": "cluster" },
          node("td", { "class": "indent" }, c.name + " ", node("small", {}, c.id)),
          node("td", {}, node("span", { "class": "state " + (status === "normal" ? "ok" : "bad") }, status)),
          node("td", {}, stateWord(c.job_list_up, "works", "FAILING", "not read yet")),
          node("td", { "class": "num" }, c.jobs.toLocaleString("en-US")),
          node("td", { "class": "detail" }, c.job_list_error || ""));
      });
      var tbody = node("tbody", {}, head);
      rows.forEach(function (row) { tbody.appendChild(row); });
      table.appendChild(tbody);
    });
  }

  function renderForm(data, view) {
    var form = document.getElementById("filter");
    var select = form.elements.namedItem("status");
    var choices = [["", "all statuses"]].concat(Object.keys(data.counts).map(function (s) { return [s, s]; }));
    view.statuses.forEach(function (s) { if (!(s in data.counts)) { choices.push([s, s]); } });
    var chosen = view.statuses.length ? view.statuses[0] : "";
    replaceChildren(select, choices.map(function (c) {
      var option = node("option", { value: c[0] }, c[1]);
      option.selected = c[0] === chosen;
      return option;
    }));
    form.elements.namedItem("sort").value = view.sort;
    var q = form.elements.namedItem("q");
    if (document.activeElement !== q) { q.value = view.q; }
  }

  function heading(key, view) {
    var current = view.sort.replace(/^-/, "") === key;
    var descending = view.sort.charAt(0) === "-";
    var target = current && !descending ? "-" + key : key;
    var mark = current ? (descending ? " \u25bc" : " \u25b2") : "";
    return node("th", { "aria-sort": current ? (descending ? "descending" : "ascending") : "none" },
      node("a", { "class": "sort", "data-sort": key, href: href(view, { sort: target, page: 1 }) },
        SORTS[key][0] + mark));
  }

  function shownLine(selection, total) {
    if (selection.matching === 0) {
      return total ? "No job matches (of " + total.toLocaleString("en-US") + ")." : "No jobs known yet.";
    }
    var first = (selection.page - 1) * PAGE_ROWS + 1;
    var last = first + selection.rows.length - 1;
    var of = selection.matching !== total
      ? selection.matching.toLocaleString("en-US") + " matching of " + total.toLocaleString("en-US")
      : total.toLocaleString("en-US");
    return "Jobs " + first.toLocaleString("en-US") + EN_DASH + last.toLocaleString("en-US") + " of " + of + ".";
  }

  function renderJobs(data, view) {
    var selection = select(data.jobs, view);
    var table = document.getElementById("jobs");
    var headings = Object.keys(SORTS).map(function (key) { return heading(key, view); });
    headings.push(node("th", { scope: "col" }, "Error"));
    replaceChildren(table.tHead.rows[0], headings);
    replaceChildren(table.tBodies[0], selection.rows.map(function (j) { return jobRow(j, data.generated_at); }));
    document.getElementById("shown").textContent = shownLine(selection, data.jobs.length);
    var pager = [node("span", {}, "page " + selection.page + " of " + selection.pages)];
    if (selection.page > 1) {
      pager.unshift(node("a", { rel: "prev", "data-page": String(selection.page - 1),
        href: href(view, { page: selection.page - 1 }) }, "\u00ab previous"));
    }
    if (selection.page < selection.pages) {
      pager.push(node("a", { rel: "next", "data-page": String(selection.page + 1),
        href: href(view, { page: selection.page + 1 }) }, "next \u00bb"));
    }
    var nav = document.getElementById("pager");
    replaceChildren(nav, []);
    pager.forEach(function (part, i) {
      if (i > 0) { nav.appendChild(document.createTextNode(" ")); }
      nav.appendChild(part);
    });
  }

  function renderFreshness() {
    var live = document.getElementById("live");
    var data = state.data;
    if (data) {
      var stamp = document.querySelector("#freshness time");
      stamp.setAttribute("datetime", data.generated_at);
      stamp.textContent = exact(data.generated_at);
    }
    if (state.failure) {
      live.textContent = "Could not refresh (" + state.failure + "); showing the last data received. " +
        "Retrying every " + REFRESH_MS / 1000 + " s.";
      live.setAttribute("class", "state bad");
    } else {
      live.textContent = "Updates itself every " + REFRESH_MS / 1000 + " s.";
      live.setAttribute("class", "muted");
    }
  }

  function renderAll() {
    var data = state.data;
    var view = state.view;
    var failed = data.jobs.filter(function (j) { return j.status_group === "failed"; }).length;
    document.title = "cdm-exporter: " + data.jobs.length.toLocaleString("en-US") + " jobs, " +
      failed.toLocaleString("en-US") + " failed";
    renderProblems(data);
    renderCounts(data, view);
    renderTargets(data);
    renderForm(data, view);
    renderJobs(data, view);
    renderFreshness();
    performance.mark("cdm:refreshed");  // for bench/status_page.py
  }

  // --- behaviour -----------------------------------------------------------------------------------

  function show(view) {
    // an unchanged view is not drawn again: redrawing the links under a pointer that is pressing
    // one (the filter box's change event fires on that press) would swallow the click
    if (href(view) === href(state.view) && view.page === state.view.page) { return; }
    state.view = view;
    var url = href(view);
    history.replaceState(null, "", url === "/" ? location.pathname : url);
    if (state.data) {
      renderCounts(state.data, view);
      renderForm(state.data, view);
      renderJobs(state.data, view);
      performance.mark("cdm:shown");
    }
  }

  function fromForm() {
    var form = document.getElementById("filter");
    var status = form.elements.namedItem("status").value;
    return {
      statuses: status ? [status] : [],
      q: form.elements.namedItem("q").value.trim().slice(0, 200),
      sort: form.elements.namedItem("sort").value,
      page: 1
    };
  }

  var typing = null;
  var form = document.getElementById("filter");
  form.addEventListener("submit", function (event) { event.preventDefault(); show(fromForm()); });
  form.addEventListener("change", function (event) {
    if (event.target.tagName === "SELECT") { show(fromForm()); }  // the text box has its input event
  });
  form.addEventListener("input", function () {
    clearTimeout(typing);
    typing = setTimeout(function () { show(fromForm()); }, 150);
  });
  // links in the counts, the column headings and the pager change the view in place
  document.addEventListener("click", function (event) {
    var link = event.target.closest("#counts a, #jobs thead a, #pager a");
    if (!link || !state.data || event.button !== 0 || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
    event.preventDefault();
    show(parseView(new URL(link.href).search));
  });
  document.addEventListener("toggle", function (event) {
    var key = event.target.getAttribute && event.target.getAttribute("data-key");
    if (key !== null && key !== undefined) {
      if (event.target.open) { state.open[key] = true; } else { delete state.open[key]; }
    }
  }, true);

  var timer = null;
  function refresh() {
    clearTimeout(timer);
    if (document.hidden && state.data) { timer = setTimeout(refresh, REFRESH_MS); return; }
    fetch(API, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (data) {
        state.data = data;
        state.failure = null;
        renderAll();
      })
      .catch(function (failure) {
        state.failure = failure && failure.message ? failure.message : String(failure);
        renderFreshness();
      })
      .then(function () {
        refreshes += 1;
        body.setAttribute("data-refreshes", String(refreshes));
        timer = setTimeout(refresh, REFRESH_MS);
      });
  }
  document.addEventListener("visibilitychange", function () { if (!document.hidden) { refresh(); } });
  refresh();
}());
