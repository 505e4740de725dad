// dtm-host admin UI: a dependency-free single-page app over dtm's JSON API (/api/dtmsvr/*) and
// the admin-only JSON (/api/admin/*). Every value from the server is put into the page as text
// (textContent / attributes), never as HTML: gids, URLs and payloads are user data.
"use strict";

(() => {
  const base = document.querySelector('meta[name="dtm-base-path"]').content;
  const uiVersion = document.querySelector('meta[name="dtm-ui-version"]').content;
  window.basePath = base;

  const TOKEN_KEY = "dtm-admin-token";
  const PAGE_SIZE = 10;
  const STATUSES = ["prepared", "submitted", "aborting", "succeed", "failed"];
  const UNFINISHED = ["prepared", "submitted", "aborting"];
  const FINISHED = ["succeed", "failed"];
  const TRANS_TYPES = ["saga", "msg", "tcc", "xa", "workflow"];

  const $ = (selector, root = document) => root.querySelector(selector);

  /** The server refused the admin token (or wants one). */
  class AuthError extends Error {}

  /** An element with attributes (`on*` become listeners) and text or element children. */
  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) {
      if (value === undefined || value === null || value === false) continue;
      if (key.startsWith("on")) {
        // Handlers may be async: their failures are shown like any other.
        node.addEventListener(key.slice(2), (event) => new Promise((done) => done(value(event))).catch(failed));
      }
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  // ---- talking to the server ------------------------------------------------------------

  async function request(path, options = {}) {
    const headers = { ...(options.headers || {}) };
    const token = sessionStorage.getItem(TOKEN_KEY);
    // Sent on dtm's API too: harmless there, and a proxy in front may check it.
    if (token) headers.Authorization = "Bearer " + token;
    const response = await fetch(path, { ...options, headers });
    const text = await response.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = null;
    }
    const message = (body && body.message) || text || response.statusText;
    if (response.status === 401) throw new AuthError(message);
    if (!response.ok) throw new Error(message);
    return body;
  }

  const query = (params) => {
    const kept = Object.entries(params).filter(([, v]) => v !== "" && v !== undefined && v !== null);
    return kept.length ? "?" + new URLSearchParams(kept) : "";
  };
  const dtmGet = (route, params = {}) => request("/api/dtmsvr" + route + query(params));
  const dtmPost = (route, body) =>
    request("/api/dtmsvr" + route, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });

  // ---- small widgets --------------------------------------------------------------------

  let toastTimer = null;
  function toast(message, kind = "ok") {
    const box = $("#toast");
    box.textContent = message;
    box.className = kind;
    box.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (box.hidden = true), 5000);
  }

  /** Asks in a modal; resolves to true when confirmed. */
  function confirmAction(text, label) {
    return new Promise((resolve) => {
      const dialog = $("#confirm");
      $("#confirm-text").textContent = text;
      $("#confirm-ok").textContent = label;
      dialog.returnValue = "";
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
    });
  }

  const badge = (status) => el("span", { class: "badge " + status }, status || "—");

  /** An RFC 3339 time as `YYYY-MM-DD HH:MM:SS`, the full value on hover. */
  function time(value) {
    if (!value) return el("span", { class: "muted" }, "—");
    const short = value.replace("T", " ").replace(/\.\d+/, "").replace(/([+-]\d\d:\d\d|Z)$/, "");
    return el("time", { datetime: value, title: value }, short);
  }

  /** A branch's payload (base64) as text, cut to `max` characters. */
  function payloadText(binData, max = 120) {
    if (!binData) return "";
    try {
      const bytes = Uint8Array.from(atob(binData), (c) => c.charCodeAt(0));
      const text = new TextDecoder().decode(bytes);
      return text.length > max ? text.slice(0, max) + "…" : text;
    } catch {
      return binData;
    }
  }

  const link = (path, ...children) => el("a", { href: base + path, "data-link": path }, ...children);
  const detailPath = (gid) => "/admin/global-transactions/detail/" + encodeURIComponent(gid);

  function table(id, headings, rows, emptyText) {
    const body = rows.length
      ? rows
      : [el("tr", { class: "empty" }, el("td", { colspan: headings.length }, emptyText))];
    return el(
      "div",
      { class: "table-wrap" },
      el("table", { id }, el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))), el("tbody", {}, body)),
    );
  }

  function pager(pageIndex, hasNext, onPrevious, onNext) {
    return el(
      "div",
      { class: "pager" },
      el("button", { id: "page-previous", type: "button", disabled: pageIndex === 0, onclick: onPrevious }, "‹ Previous"),
      el("span", { id: "page-number", class: "muted" }, "Page " + (pageIndex + 1)),
      el("button", { id: "page-next", type: "button", disabled: !hasNext, onclick: onNext }, "Next ›"),
    );
  }

  function select(id, label, values, current, anyLabel) {
    return el(
      "label",
      {},
      label,
      el(
        "select",
        { id, name: id },
        el("option", { value: "" }, anyLabel),
        values.map((v) => el("option", { value: v, selected: v === current }, v)),
      ),
    );
  }

  // ---- pages ------------------------------------------------------------------------------

  /** dtm's `createTimeStart` / `createTimeEnd` (ms) from the form's local date-times. */
  function createdRange(filter) {
    const ms = (local) => (local ? String(new Date(local).getTime()) : "");
    return { createTimeStart: ms(filter.createdFrom), createTimeEnd: ms(filter.createdTo) };
  }

  /**
   * A page of transactions from `/all`. `cursor` is dtm's `next_position`; when the list is
   * "any unfinished status" it is `{index, position}`: the statuses are read one after the
   * other, each newest first, because `/all` filters by one status.
   */
  async function fetchTransactions(filter, cursor) {
    if (filter.gid) {
      const found = await dtmGet("/all", { gid: filter.gid });
      const rows = (found.transactions || []).filter(
        (t) =>
          (!filter.status || t.status === filter.status) &&
          (!filter.unfinishedOnly || UNFINISHED.includes(t.status)) &&
          (!filter.transType || t.trans_type === filter.transType),
      );
      return { rows, next: null };
    }
    if (!filter.unfinishedOnly || filter.status) {
      const page = await dtmGet("/all", {
        limit: PAGE_SIZE,
        position: cursor,
        status: filter.status,
        transType: filter.transType,
        ...createdRange(filter),
      });
      return { rows: page.transactions || [], next: page.next_position || null };
    }
    let { index, position } = cursor || { index: 0, position: "" };
    const rows = [];
    while (index < UNFINISHED.length && rows.length < PAGE_SIZE) {
      const page = await dtmGet("/all", {
        limit: PAGE_SIZE - rows.length,
        position,
        status: UNFINISHED[index],
        transType: filter.transType,
        ...createdRange(filter),
      });
      rows.push(...(page.transactions || []));
      if (page.next_position) {
        position = page.next_position;
      } else {
        index += 1;
        position = "";
      }
    }
    return { rows, next: index < UNFINISHED.length ? { index, position } : null };
  }

  function transactionRow(t) {
    return el(
      "tr",
      { "data-gid": t.gid, class: "clickable", onclick: (e) => e.target.closest("a") || go(detailPath(t.gid)) },
      el("td", {}, link(detailPath(t.gid), el("code", {}, t.gid))),
      el("td", {}, t.trans_type),
      el("td", { class: "status" }, badge(t.status)),
      el("td", {}, t.protocol),
      el("td", {}, time(t.create_time)),
      el("td", {}, time(t.update_time)),
      el("td", {}, time(t.finish_time)),
      el("td", {}, time(t.rollback_time)),
      el("td", {}, t.next_cron_interval + " s"),
      el("td", {}, FINISHED.includes(t.status) ? el("span", { class: "muted" }, "—") : time(t.next_cron_time)),
    );
  }

  async function transactionsPage(unfinishedOnly, show) {
    const params = new URLSearchParams(location.search);
    const statuses = unfinishedOnly ? UNFINISHED : STATUSES;
    const filter = {
      unfinishedOnly,
      gid: params.get("gid") || "",
      status: statuses.includes(params.get("status")) ? params.get("status") : "",
      transType: TRANS_TYPES.includes(params.get("transType")) ? params.get("transType") : "",
      createdFrom: params.get("createdFrom") || "",
      createdTo: params.get("createdTo") || "",
    };
    const path = unfinishedOnly ? "/admin/global-transactions/unfinished" : "/admin/global-transactions/all";
    const form = el(
      "form",
      {
        id: "filters",
        class: "filters",
        onsubmit: (e) => {
          e.preventDefault();
          const data = new FormData(e.target);
          go(
            path +
              query({
                gid: data.get("gid").trim(),
                status: data.get("status"),
                transType: data.get("transType"),
                createdFrom: data.get("createdFrom"),
                createdTo: data.get("createdTo"),
              }),
          );
        },
      },
      el("label", {}, "Gid", el("input", { id: "filter-gid", name: "gid", value: filter.gid, placeholder: "exact gid" })),
      select("status", "Status", statuses, filter.status, unfinishedOnly ? "any unfinished" : "any"),
      select("transType", "Type", TRANS_TYPES, filter.transType, "any"),
      el("label", {}, "Created from", el("input", { name: "createdFrom", type: "datetime-local", value: filter.createdFrom })),
      el("label", {}, "to", el("input", { name: "createdTo", type: "datetime-local", value: filter.createdTo })),
      el("button", { id: "filter-apply", type: "submit", class: "primary" }, "Search"),
      el("button", { type: "button", class: "ghost", onclick: () => go(path) }, "Clear"),
    );
    const results = el("div", { id: "results" }, el("p", { class: "muted" }, "Loading…"));
    const cursors = [""];
    let pageIndex = 0;
    const load = async () => {
      const page = await fetchTransactions(filter, cursors[pageIndex]);
      cursors[pageIndex + 1] = page.next;
      const headings = ["Gid", "Type", "Status", "Protocol", "Created", "Updated", "Finished", "Rolled back", "Interval", "Next cron"];
      const empty = unfinishedOnly ? "No unfinished transactions." : "No transactions.";
      results.replaceChildren(
        table("tx-table", headings, page.rows.map(transactionRow), empty),
        pager(
          pageIndex,
          page.next !== null,
          () => step(-1),
          () => step(1),
        ),
      );
    };
    const step = (delta) => {
      pageIndex += delta;
      return load();
    };
    const title = unfinishedOnly ? "Unfinished transactions" : "All transactions";
    const note = unfinishedOnly
      ? el("p", { class: "muted" }, "Prepared, submitted and aborting transactions, grouped by status, newest first.")
      : null;
    show(el("section", {}, el("h1", {}, title), note, form, results));
    await load();
  }

  async function detailPage(gid, show) {
    const reply = await dtmGet("/query", { gid });
    const t = reply.transaction;
    if (!t) {
      show(
        el(
          "section",
          {},
          el("h1", {}, "Transaction not found"),
          el("p", {}, "No transaction has gid ", el("code", {}, gid), "."),
          link("/admin/global-transactions/all", "Back to the list"),
        ),
      );
      return;
    }
    const finished = FINISHED.includes(t.status);
    const refresh = () => render();
    const act = async (route, question, label, done) => {
      if (!(await confirmAction(question, label))) return;
      try {
        await dtmPost(route, { gid });
        toast(done);
      } catch (e) {
        if (e instanceof AuthError) throw e;
        toast(label + " failed: " + e.message, "error");
      }
      await refresh();
    };
    const actions = el(
      "div",
      { class: "actions" },
      el("button", { id: "refresh", type: "button", onclick: refresh }, "Refresh"),
      el(
        "button",
        {
          id: "reset-cron",
          type: "button",
          disabled: finished,
          onclick: () =>
            act(
              "/resetNextCronTime",
              "Make " + gid + " due now? The recovery loop picks it up on its next pass.",
              "Reset next cron time",
              "Next cron time reset",
            ),
        },
        "Reset next cron time",
      ),
      el(
        "button",
        {
          id: "force-stop",
          type: "button",
          class: "danger",
          disabled: finished,
          onclick: () =>
            act(
              "/forceStop",
              "Force stop " + gid + "? It becomes failed at once; no compensation is called.",
              "Force stop",
              "Transaction stopped",
            ),
        },
        "Force stop",
      ),
    );
    const field = (label, value) => [el("dt", {}, label), el("dd", {}, value === "" || value == null ? "—" : value)];
    const fields = el(
      "dl",
      { id: "fields", class: "fields" },
      field("Gid", el("code", {}, t.gid)),
      field("Status", badge(t.status)),
      field("Type", t.trans_type),
      field("Protocol", t.protocol),
      field("Id", String(t.id)),
      field("Created", time(t.create_time)),
      field("Updated", time(t.update_time)),
      field("Finished", time(t.finish_time)),
      field("Rolled back", time(t.rollback_time)),
      field("Rollback reason", t.rollback_reason),
      field("Next cron time", finished ? "" : time(t.next_cron_time)),
      field("Next cron interval", t.next_cron_interval ? t.next_cron_interval + " s" : ""),
      field("Query prepared", t.query_prepared ? el("code", {}, t.query_prepared) : ""),
      field("Options", t.options ? el("code", {}, t.options) : ""),
      field("Custom data", t.custom_data ? el("code", {}, t.custom_data) : ""),
      field("Result", t.result ? el("code", {}, t.result) : ""),
    );
    const branchRows = (reply.branches || []).map((b) =>
      el(
        "tr",
        { "data-branch": b.branch_id + "/" + b.op },
        el("td", {}, el("code", {}, b.branch_id)),
        el("td", {}, b.op),
        el("td", { class: "status" }, badge(b.status)),
        el("td", { class: "url" }, el("code", {}, b.url)),
        el("td", { class: "payload" }, el("code", { title: payloadText(b.bin_data, 4000) }, payloadText(b.bin_data))),
        el("td", {}, time(b.create_time)),
        el("td", {}, time(b.update_time)),
        el("td", {}, time(b.finish_time)),
      ),
    );
    show(
      el(
        "section",
        {},
        el("p", {}, link("/admin/global-transactions/all", "‹ All transactions")),
        el("div", { class: "title-row" }, el("h1", {}, "Transaction ", el("code", {}, t.gid)), el("span", { id: "detail-status" }, badge(t.status))),
        actions,
        el("div", { class: "card" }, fields),
        el("h2", {}, "Branches"),
        table(
          "branches",
          ["Branch", "Op", "Status", "URL", "Payload", "Created", "Updated", "Finished"],
          branchRows,
          "No branches.",
        ),
        el("details", { class: "raw" }, el("summary", {}, "Raw query reply"), el("pre", {}, JSON.stringify(reply, null, 2))),
      ),
    );
  }

  function subscribers(entry) {
    try {
      const list = JSON.parse(entry.v);
      return Array.isArray(list) ? list : [];
    } catch {
      return [];
    }
  }

  async function topicsPage(show) {
    const results = el("div", { id: "results" }, el("p", { class: "muted" }, "Loading…"));
    const cursors = [""];
    let pageIndex = 0;
    const reload = () => load();
    const topicRow = (entry) => {
      const subs = subscribers(entry);
      const detail = el(
        "tr",
        { class: "sub-row", hidden: true },
        el(
          "td",
          { colspan: 4 },
          table(
            null,
            ["Subscriber URL", "Remark", ""],
            subs.map((s) =>
              el(
                "tr",
                {},
                el("td", {}, el("code", {}, s.url)),
                el("td", {}, s.remark),
                el(
                  "td",
                  {},
                  el(
                    "button",
                    {
                      type: "button",
                      class: "small",
                      onclick: async () => {
                        if (!(await confirmAction("Unsubscribe " + s.url + " from " + entry.k + "?", "Unsubscribe"))) return;
                        await dtmGet("/unsubscribe", { topic: entry.k, url: s.url });
                        toast("Unsubscribed");
                        await reload();
                      },
                    },
                    "Unsubscribe",
                  ),
                ),
              ),
            ),
            "No subscribers.",
          ),
        ),
      );
      const row = el(
        "tr",
        { "data-topic": entry.k },
        el("td", {}, el("code", {}, entry.k)),
        el("td", {}, String(subs.length)),
        el("td", {}, String(entry.version)),
        el(
          "td",
          { class: "row-actions" },
          el("button", { type: "button", class: "small", onclick: () => (detail.hidden = !detail.hidden) }, "Subscribers"),
          el(
            "button",
            {
              type: "button",
              class: "small danger",
              onclick: async () => {
                if (!(await confirmAction("Delete topic " + entry.k + " and all its subscribers?", "Delete"))) return;
                await request("/api/dtmsvr/topic/" + encodeURIComponent(entry.k), { method: "DELETE" });
                toast("Topic deleted");
                await reload();
              },
            },
            "Delete",
          ),
        ),
      );
      return [row, detail];
    };
    const load = async () => {
      const page = await dtmGet("/scanKV", { cat: "topics", limit: PAGE_SIZE, position: cursors[pageIndex] });
      cursors[pageIndex + 1] = page.next_position || null;
      results.replaceChildren(
        table("topics", ["Topic", "Subscribers", "Version", ""], (page.kv || []).flatMap(topicRow), "No topics."),
        pager(
          pageIndex,
          cursors[pageIndex + 1] !== null,
          () => {
            pageIndex -= 1;
            return reload();
          },
          () => {
            pageIndex += 1;
            return reload();
          },
        ),
      );
    };
    const form = el(
      "form",
      {
        id: "subscribe",
        class: "filters",
        onsubmit: async (e) => {
          e.preventDefault();
          const data = new FormData(e.target);
          try {
            await dtmGet("/subscribe", { topic: data.get("topic"), url: data.get("url"), remark: data.get("remark") });
          } catch (err) {
            if (err instanceof AuthError) return failed(err);
            return toast("Subscribe failed: " + err.message, "error");
          }
          toast("Subscribed");
          e.target.reset();
          await reload();
        },
      },
      el("label", {}, "Topic", el("input", { name: "topic", required: true })),
      el("label", { class: "wide" }, "Subscriber URL", el("input", { name: "url", required: true, placeholder: "http://…" })),
      el("label", {}, "Remark", el("input", { name: "remark" })),
      el("button", { type: "submit", class: "primary" }, "Subscribe"),
    );
    show(el("section", {}, el("h1", {}, "Topics"), form, results));
    await load();
  }

  async function driversPage(show) {
    const redraw = () => driversPage(show);
    const reloadDriver = async () => {
      if (!(await confirmAction("Load the driver's file again? Calls under way finish on the running driver.", "Reload"))) return;
      try {
        // The JSON content type is what the host requires of a reload: another site's page
        // cannot send it without a CORS preflight.
        const reply = await request("/api/admin/drivers/reload", {
          method: "POST",
          headers: { "Content-Type": "application/json" },
        });
        toast("Reloaded: " + reply.driver + " " + reply.sha256.slice(0, 12));
      } catch (err) {
        if (err instanceof AuthError) return failed(err);
        toast("Reload refused, the running driver keeps serving: " + err.message, "error");
      }
      await redraw();
    };
    const reply = await request("/api/admin/drivers");
    const rows = (reply.drivers || []).map((d) =>
      el(
        "tr",
        { "data-driver": d.name },
        el("td", {}, el("code", {}, d.name)),
        el("td", {}, d.path ? el("code", {}, d.path) : el("span", { class: "muted" }, "built in")),
        el("td", {}, d.sha256 ? el("code", { title: d.sha256 }, d.sha256.slice(0, 12)) : "—"),
        el("td", {}, d.schemes.length ? d.schemes.join(", ") : el("span", { class: "muted" }, "none")),
        el("td", {}, [d.rewrites_http && "HTTP", d.rewrites_grpc && "gRPC"].filter(Boolean).join(", ") || "—"),
        el("td", {}, d.target ? el("code", {}, d.target) : el("span", { class: "muted" }, "not registered")),
        el("td", { class: "status" }, badge(d.state)),
        el(
          "td",
          { class: "row-actions" },
          d.path ? el("button", { type: "button", class: "small", onclick: reloadDriver }, "Reload") : "",
        ),
      ),
    );
    show(
      el(
        "section",
        {},
        el("h1", {}, "Microservice drivers"),
        table("drivers", ["Name", "Component", "SHA-256", "Schemes", "Rewrites", "Registered in", "State", ""], rows, "No driver."),
      ),
    );
  }

  // ---- routing and sign-in ----------------------------------------------------------------

  const routes = [
    [/^\/admin\/global-transactions\/all$/, (_, show) => transactionsPage(false, show)],
    [/^\/admin\/global-transactions\/unfinished$/, (_, show) => transactionsPage(true, show)],
    [/^\/admin\/global-transactions\/detail\/(.+)$/, (m, show) => detailPage(decodeURIComponent(m[1]), show)],
    [/^\/admin\/kv\/topics$/, (_, show) => topicsPage(show)],
    [/^\/admin\/drivers$/, (_, show) => driversPage(show)],
  ];

  let renderCount = 0;

  function go(path) {
    history.pushState(null, "", base + path);
    render();
  }

  async function render() {
    const path = location.pathname.startsWith(base) ? location.pathname.slice(base.length) : location.pathname;
    const route = routes.map(([pattern, page]) => [path.match(pattern), page]).find(([match]) => match);
    if (!route) {
      history.replaceState(null, "", base + "/admin/global-transactions/all");
      return render();
    }
    renderCount += 1;
    const current = renderCount;
    for (const a of document.querySelectorAll("#nav a")) {
      a.classList.toggle("active", path.startsWith(a.dataset.link) || (path.includes("/detail/") && a.dataset.link.endsWith("/all")));
    }
    // A page shows itself only if the user has not moved on while it was loading.
    const show = (node) => current === renderCount && $("#main").replaceChildren(node);
    try {
      await route[1](route[0], show);
    } catch (e) {
      if (current === renderCount) failed(e);
    }
  }

  function failed(e) {
    if (e instanceof AuthError) {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("The admin token was refused: " + e.message);
      return;
    }
    toast(e.message, "error");
    $("#main").replaceChildren(el("section", {}, el("h1", {}, "Something went wrong"), el("p", { class: "error" }, e.message)));
  }

  function showLogin(message) {
    $("#app").hidden = true;
    $("#nav").hidden = true;
    $("#main").hidden = true;
    $("#main").replaceChildren();
    $("#logout").hidden = true;
    $("#login").hidden = false;
    $("#login-error").textContent = message || "";
    $("#login-token").value = "";
    $("#login-token").focus();
  }

  async function signedIn(session) {
    $("#login").hidden = true;
    $("#app").hidden = false;
    $("#nav").hidden = false;
    $("#main").hidden = false;
    $("#logout").hidden = !session.token_required;
    await render();
  }

  async function start() {
    $("#version").textContent = "v" + uiVersion;
    dtmGet("/version")
      .then((v) => {
        if (v.version !== "v" + uiVersion) {
          const warning = $("#version-warning");
          warning.textContent = "server is " + v.version + ", this page is v" + uiVersion + ": reload";
          warning.hidden = false;
        }
      })
      .catch(() => {});
    document.addEventListener("click", (e) => {
      const a = e.target.closest("a[data-link]");
      if (!a || e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
      e.preventDefault();
      if ($("#login").hidden) go(a.dataset.link);
    });
    window.addEventListener("popstate", () => $("#login").hidden && render());
    $("#logout").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin("Signed out.");
    });
    $("#login-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, $("#login-token").value.trim());
      try {
        await signedIn(await request("/api/admin/session"));
      } catch (err) {
        sessionStorage.removeItem(TOKEN_KEY);
        showLogin(err instanceof AuthError ? "That token is not this coordinator's admin token." : err.message);
      }
    });
    try {
      await signedIn(await request("/api/admin/session"));
    } catch (e) {
      if (!(e instanceof AuthError)) return failed(e);
      const hadToken = sessionStorage.getItem(TOKEN_KEY) !== null;
      sessionStorage.removeItem(TOKEN_KEY);
      showLogin(hadToken ? "The saved admin token was refused; sign in again." : "");
    }
  }

  start();
})();
