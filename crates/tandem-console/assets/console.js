// The console's only script: served by the binary, nothing fetched from
// elsewhere. It opens the links the mlflow client prints (`/#/experiments/1`,
// `/#/experiments/1/runs/<id>`, `/#/models/<name>/versions/<v>`), switches
// workspaces, and keeps the deployment page current.
(function () {
  "use strict";
  var hash = window.location.hash || "";
  var match;
  if ((match = hash.match(/^#\/experiments\/([^/]+)\/runs\/([^/?]+)/))) {
    window.location.replace(prefix() + "/runs/" + encodeURIComponent(match[2]));
    return;
  }
  if ((match = hash.match(/^#\/models\/([^/]+)\/versions\/([^/?]+)/))) {
    window.location.replace(prefix() + "/models/" + match[1] + "/versions/" + encodeURIComponent(match[2]));
    return;
  }
  if ((match = hash.match(/^#\/models\/([^/?]+)/))) {
    window.location.replace(prefix() + "/models/" + match[1]);
    return;
  }
  if ((match = hash.match(/^#\/experiments\/([^/?]+)/))) {
    window.location.replace(prefix() + "/experiments/" + encodeURIComponent(match[1]));
    return;
  }

  function prefix() {
    var path = window.location.pathname.match(/^\/w\/[^/]+/);
    return path ? path[0] : "";
  }

  document.addEventListener("DOMContentLoaded", function () {
    var switcher = document.querySelector("form[data-switcher]");
    if (switcher) {
      switcher.addEventListener("submit", function (event) {
        event.preventDefault();
        var name = switcher.querySelector("input").value.trim();
        window.location.href = !name || name === "default" ? "/" : "/w/" + encodeURIComponent(name);
      });
      workspaces(switcher);
    }
    Array.prototype.forEach.call(document.querySelectorAll("svg.chart[data-x0]"), zoomable);
    // Forms that destroy something ask first.
    Array.prototype.forEach.call(document.querySelectorAll("form[data-confirm]"), function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) {
          event.preventDefault();
        }
      });
    });
    if (document.getElementById("backups-form")) {
      continuity();
    }
    var deployment = document.getElementById("deployment");
    if (deployment) {
      refresh(deployment);
      window.setInterval(function () { refresh(deployment); }, 2000);
      var gateway = document.getElementById("gateway-view");
      if (gateway) {
        gatewayView(gateway);
        window.setInterval(function () { gatewayView(gateway); }, 2000);
      }
    }
  });

  // The switcher offers the workspaces the viewer may list; without them
  // (signed out, or an older region) it still takes a typed name.
  function workspaces(switcher) {
    var list = document.getElementById("workspace-list");
    if (!list || window.location.pathname === "/login") {
      return;
    }
    fetch("/api/tandem/v1/workspaces", { credentials: "same-origin", headers: { "X-Tandem-Console": "1" } })
      .then(function (response) { return response.ok ? response.json() : { workspaces: [] }; })
      .then(function (body) {
        (body.workspaces || []).forEach(function (workspace) {
          var option = document.createElement("option");
          option.value = workspace.name;
          list.appendChild(option);
        });
      })
      .catch(function () { /* the typed name still works */ });
  }

  // Drag across a chart to zoom into that x range: the page is asked again
  // with from/to, and the server charts just that range from the store.
  function zoomable(svg) {
    var x0 = parseFloat(svg.getAttribute("data-x0"));
    var x1 = parseFloat(svg.getAttribute("data-x1"));
    var left = parseFloat(svg.getAttribute("data-left"));
    var right = parseFloat(svg.getAttribute("data-right"));
    var width = parseFloat(svg.getAttribute("data-width"));
    var start = null;
    var band = null;
    function at(event) {
      var box = svg.getBoundingClientRect();
      var viewX = (event.clientX - box.left) / box.width * width;
      return Math.min(Math.max(viewX, left), right);
    }
    function toX(viewX) {
      return x0 + (viewX - left) / (right - left) * (x1 - x0);
    }
    svg.addEventListener("mousedown", function (event) {
      start = at(event);
      band = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      band.setAttribute("class", "zoom-band");
      band.setAttribute("y", "8");
      band.setAttribute("height", String(svg.viewBox.baseVal.height - 36));
      band.setAttribute("x", String(start));
      band.setAttribute("width", "0");
      svg.appendChild(band);
      event.preventDefault();
    });
    svg.addEventListener("mousemove", function (event) {
      if (start === null) {
        return;
      }
      var now = at(event);
      band.setAttribute("x", String(Math.min(start, now)));
      band.setAttribute("width", String(Math.abs(now - start)));
    });
    function finish(event) {
      if (start === null) {
        return;
      }
      var end = at(event);
      var began = start;
      var from = Math.floor(toX(Math.min(began, end)));
      var to = Math.ceil(toX(Math.max(began, end)));
      start = null;
      band.parentNode.removeChild(band);
      // A click, not a drag (or a range too narrow to chart): stay.
      if (Math.abs(end - began) < 4 || to - from < 1) {
        return;
      }
      var params = new URLSearchParams(window.location.search);
      params.set("from", String(from));
      params.set("to", String(to));
      window.location.search = params.toString();
    }
    svg.addEventListener("mouseup", finish);
    svg.addEventListener("mouseleave", function () {
      if (start !== null && band) {
        band.parentNode.removeChild(band);
      }
      start = null;
    });
  }

  // --- The continuity page: verify, conflicts, divergence, backups. ---

  function api(method, url, body) {
    var init = { method: method, credentials: "same-origin", headers: { "X-Tandem-Console": "1" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(url, init).then(function (response) {
      return response.json()
        .catch(function () { return { message: "answered " + response.status + " without JSON" }; })
        .then(function (json) { return { ok: response.ok, status: response.status, body: json }; });
    });
  }

  // A POST answered with NDJSON: each line to `line`, resolving with the
  // last (`result` or `error`).
  function stream(url, body, line) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Tandem-Console": "1" },
      body: JSON.stringify(body)
    }).then(function (response) {
      if (!response.ok) {
        return response.json().catch(function () { return {}; }).then(function (error) {
          return { error: { message: error.message || ("answered " + response.status) } };
        });
      }
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var pending = "";
      var last = null;
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            return last || { error: { message: "the stream ended without a result" } };
          }
          pending += decoder.decode(chunk.value, { stream: true });
          var lines = pending.split("\n");
          pending = lines.pop();
          lines.forEach(function (text) {
            if (text.trim()) {
              var value = JSON.parse(text);
              last = value;
              line(value);
            }
          });
          return pump();
        });
      }
      return pump();
    });
  }

  function say(target, text, kind) {
    target.textContent = "";
    var p = document.createElement("p");
    if (kind) {
      p.className = kind;
      if (kind === "error") {
        p.setAttribute("role", "alert");
      }
    }
    p.textContent = text;
    target.appendChild(p);
    return p;
  }

  function when(millis) {
    return millis ? new Date(millis).toISOString().replace(".000Z", "Z") : null;
  }

  function button(text, action, danger) {
    var b = document.createElement("button");
    b.type = "button";
    b.textContent = text;
    if (danger) {
      b.className = "danger";
    }
    b.addEventListener("click", action);
    return b;
  }

  function continuity() {
    var verify = document.getElementById("verify");
    if (verify) {
      loadVerify(verify);
      document.getElementById("verify-now").addEventListener("click", function () {
        say(verify, "Verifying every region's replica…");
        api("POST", "/api/tandem/v1/verify", {}).then(function (answer) { showVerify(verify, answer); });
      });
    }
    var doctor = document.getElementById("doctor");
    if (doctor) {
      loadDoctor(doctor);
    }
    loadConflicts(document.getElementById("conflicts"));
    var divergence = document.getElementById("divergence");
    if (divergence) {
      loadDivergence(divergence);
    }
    var form = document.getElementById("backups-form");
    var input = document.getElementById("repository");
    try {
      input.value = window.localStorage.getItem("tandem.repository") || "";
    } catch (ignored) { /* storage off: the field starts empty */ }
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      try {
        window.localStorage.setItem("tandem.repository", input.value.trim());
      } catch (ignored) { /* not remembered, still listed */ }
      loadBackups(input.value.trim());
    });
    if (input.value) {
      loadBackups(input.value);
    }
  }

  function refused(target, answer) {
    if (answer.status === 401) {
      signedOut(target);
      return true;
    }
    if (!answer.ok) {
      say(target, answer.body.message || ("answered " + answer.status), "error");
      return true;
    }
    return false;
  }

  // What the doctor reads says whether this region verified yet (the last
  // report itself is a 404 until then, which a browser logs as an error),
  // and names the repository the region backs up to.
  function loadVerify(target) {
    api("GET", "/api/tandem/v1/diagnostics").then(function (answer) {
      if (refused(target, answer)) {
        return;
      }
      var repository = document.getElementById("repository");
      if (answer.body.backups && answer.body.backups.repository && !repository.value) {
        repository.value = answer.body.backups.repository;
        loadBackups(repository.value);
      }
      if (!answer.body.verification) {
        say(target, "No verification since this region started" +
          (answer.body.verify_interval_ms ? " (the primary verifies every " + answer.body.verify_interval_ms / 1000 + " s)" : "") +
          ": verify now.", "note");
        return;
      }
      api("GET", target.getAttribute("data-source")).then(function (last) { showVerify(target, last); });
    }).catch(function (error) { say(target, "This region does not answer: " + error, "error"); });
  }

  function showVerify(target, answer) {
    if (refused(target, answer)) {
      return;
    }
    var report = answer.body;
    say(target, (report.ok ? "Equal: " : "NOT equal: ") + report.workspaces.length + " workspace(s) in " +
      report.regions.join(", ") + ", verified by " + report.verified_by + " at " + when(report.finished_at) +
      (report.differences ? ", " + report.differences + " difference(s)" : ""), report.ok ? "done" : "error");
    Object.keys(report.unreachable || {}).forEach(function (name) {
      var p = document.createElement("p");
      p.className = "error";
      p.textContent = "Region " + name + " could not be asked: " + report.unreachable[name];
      target.appendChild(p);
    });
    var rows = [];
    report.workspaces.forEach(function (workspace) {
      (workspace.differences || []).forEach(function (difference) {
        rows.push([workspace.name, difference.class, difference.table, difference.key,
          Object.keys(difference.regions).map(function (region) {
            return region + "=" + String(difference.regions[region]).slice(0, 12);
          }).join(" ")]);
      });
    });
    if (rows.length) {
      target.appendChild(grid(["Workspace", "Class", "Table", "Object", "Digest per region"], rows));
    }
  }

  function loadDoctor(target) {
    api("GET", target.getAttribute("data-source")).then(function (answer) {
      if (refused(target, answer)) {
        return;
      }
      var report = answer.body;
      var warnings = report.checks.filter(function (check) { return check.status === "warn"; }).length;
      say(target, report.failover_ready
        ? "A failover would succeed now (" + warnings + " warning" + (warnings === 1 ? "" : "s") + ")."
        : "A failover would NOT succeed now: " + report.failed.join(", ") + " failed.",
        report.failover_ready ? "done" : "error");
      var table = grid(["", "Check", "Why", "Fix"], report.checks.map(function (check) {
        return [check.status.toUpperCase(), check.name, check.reason, check.fix];
      }));
      Array.prototype.forEach.call(table.querySelectorAll("tr"), function (row, index) {
        if (index > 0 && report.checks[index - 1].status === "fail") {
          row.className = "bad";
        }
      });
      target.appendChild(table);
    }).catch(function (error) { say(target, "This region does not answer: " + error, "error"); });
  }

  function loadConflicts(target) {
    api("GET", target.getAttribute("data-source")).then(function (answer) {
      if (refused(target, answer)) {
        return;
      }
      var conflicts = answer.body.conflicts || [];
      if (!conflicts.length) {
        say(target, "No conflict: no concurrent writes of the same object in two regions.", "note");
        return;
      }
      target.textContent = "";
      target.appendChild(grid(["Detected", "Workspace", "Object", "Resolution", "Kept", "Lost"],
        conflicts.map(function (conflict) {
          return [when(conflict.detected_at), conflict.workspace_id, conflict.register, conflict.resolution,
            conflict.winner.origin_region + " #" + conflict.winner.origin_seq,
            conflict.loser.origin_region + " #" + conflict.loser.origin_seq];
        })));
    }).catch(function (error) { say(target, "This region does not answer: " + error, "error"); });
  }

  function loadDivergence(target) {
    api("GET", target.getAttribute("data-source")).then(function (answer) {
      if (refused(target, answer)) {
        return;
      }
      var records = answer.body.records || [];
      if (!records.length) {
        say(target, "Nothing in quarantine in region " + answer.body.region + ".", "note");
        return;
      }
      target.textContent = "";
      var table = grid(["Record", "Position", "Change", "Why", "Found", "Status", ""], records.map(function (record) {
        return [record.id, record.seq, Object.keys(record.record.change || {})[0] || "", record.reason,
          when(record.found_at), record.status, ""];
      }));
      var rows = table.querySelectorAll("tr");
      records.forEach(function (record, index) {
        var actions = rows[index + 1].lastChild;
        var detail = document.createElement("pre");
        detail.className = "preview";
        detail.hidden = true;
        actions.appendChild(button("Show", function () {
          api("GET", "/api/tandem/v1/divergence/" + encodeURIComponent(record.id)).then(function (shown) {
            detail.hidden = false;
            detail.textContent = shown.ok ? JSON.stringify(shown.body.record, null, 2) : (shown.body.message || shown.status);
          });
        }));
        if (record.status === "quarantined") {
          actions.appendChild(button("Apply", function () {
            var question = "Apply " + record.id + ": its change is written again at the primary, as a new change " +
              "after everything written since the failover (it may overwrite newer values). Go ahead?";
            if (!window.confirm(question)) {
              return;
            }
            api("POST", "/api/tandem/v1/divergence/" + encodeURIComponent(record.id) + "/apply").then(function (applied) {
              var outcome = document.getElementById("divergence-outcome") || document.createElement("p");
              outcome.id = "divergence-outcome";
              outcome.className = applied.ok ? "done" : "error";
              outcome.textContent = applied.ok ? "Applied " + record.id + " at the primary."
                : "Not applied: " + (applied.body.message || applied.status);
              loadDivergence(target);
              target.parentNode.appendChild(outcome);
            });
          }, true));
        }
        actions.appendChild(detail);
      });
      target.appendChild(table);
    }).catch(function (error) { say(target, "This region does not answer: " + error, "error"); });
  }

  function progressOf(line) {
    var phase = document.getElementById("restore-phase");
    var bar = document.getElementById("restore-bar");
    document.getElementById("restore-progress").hidden = false;
    if (line.progress) {
      var p = line.progress;
      phase.textContent = p.phase + ": " + p.done + " of " + p.total + " " + p.unit;
      bar.max = Math.max(1, p.total);
      bar.value = p.done;
    }
  }

  function loadBackups(repository) {
    var target = document.getElementById("backups");
    if (!repository) {
      say(target, "Give the repository's URL.", "error");
      return;
    }
    say(target, "Listing " + repository + "…");
    api("GET", "/api/tandem/v1/backups?from=" + encodeURIComponent(repository)).then(function (answer) {
      if (refused(target, answer)) {
        return;
      }
      var backups = answer.body.backups || [];
      if (!backups.length) {
        say(target, "No backup in " + repository + " yet.", "note");
        return;
      }
      target.textContent = "";
      var table = grid(["Backup", "Kind", "Region", "Position", "Created", "Workspaces", ""], backups.map(function (backup) {
        return [backup.id, backup.kind, backup.region, backup.position, when(backup.created_at),
          backup.workspaces.map(function (w) { return w.name; }).join(", "), ""];
      }));
      var rows = table.querySelectorAll("tr");
      backups.forEach(function (backup, index) {
        var actions = rows[index + 1].lastChild;
        actions.appendChild(button("Verify", function () { verifyBackup(repository, backup); }));
        backup.workspaces.forEach(function (workspace) {
          actions.appendChild(button("Restore " + workspace.name, function () {
            restoreBackup(repository, backup, workspace);
          }, true));
        });
      });
      target.appendChild(table);
    }).catch(function (error) { say(target, "This region does not answer: " + error, "error"); });
  }

  function verifyBackup(repository, backup) {
    var outcome = document.getElementById("backups-outcome");
    say(outcome, "Verifying " + backup.id + "…");
    stream("/api/tandem/v1/backups/verify", { from: repository, backup: backup.id }, progressOf).then(function (last) {
      if (last.error) {
        say(outcome, "Verify failed: " + last.error.message, "error");
        return;
      }
      var report = last.result;
      say(outcome, report.problems.length
        ? "Backup " + backup.id + " is damaged: " + report.problems.length + " problem(s), first: " + JSON.stringify(report.problems[0])
        : "Backup " + backup.id + " verified: " + report.objects_checked + " objects, " + report.bytes_checked + " bytes, all present and intact.",
        report.problems.length ? "error" : "done");
    });
  }

  function restoreBackup(repository, backup, workspace) {
    var outcome = document.getElementById("backups-outcome");
    var name = window.prompt("Restore workspace " + workspace.name + " as it was at backup " + backup.id +
      " (position " + backup.position + "). Restore it as a new workspace named:", workspace.name + "-restored");
    if (name === null) {
      return;
    }
    name = name.trim();
    var inPlace = name === "" || name === workspace.name;
    var question = inPlace
      ? "Restore " + workspace.name + " in place: objects it lacks come back, existing ones are kept. Go ahead?"
      : "Restore " + workspace.name + " as a new workspace " + name + " (the original is not touched). Go ahead?";
    if (!window.confirm(question)) {
      return;
    }
    var body = { from: repository, backup: backup.id, workspace: workspace.name };
    if (!inPlace) {
      body.as = name;
    }
    say(outcome, "Restoring…");
    stream("/api/tandem/v1/restores", body, progressOf).then(function (last) {
      if (last.error) {
        say(outcome, "The restore did not happen: " + last.error.message, "error");
        return;
      }
      var result = last.result;
      var p = say(outcome, "Restored " + result.workspace + ": " + result.records + " changes, " + result.artifacts +
        " artifacts, " + result.files + " files, " + result.bytes + " bytes, at position " + result.position +
        " of " + result.source_region + ". ", "done");
      var link = document.createElement("a");
      link.href = result.workspace === "default" ? "/" : "/w/" + encodeURIComponent(result.workspace) + "/";
      link.textContent = "Open it";
      p.appendChild(link);
    });
  }

  // A script's request whose session ended says so, with the way back.
  function signedOut(target) {
    target.textContent = "";
    var message = document.createElement("p");
    message.className = "error";
    message.setAttribute("role", "alert");
    message.textContent = "Your session has ended. ";
    var link = document.createElement("a");
    link.href = "/login?next=" + encodeURIComponent(window.location.pathname + window.location.search);
    link.textContent = "Sign in again";
    message.appendChild(link);
    target.appendChild(message);
  }

  function heading(text) {
    var h = document.createElement("h2");
    h.textContent = text;
    return h;
  }

  function grid(titles, rows) {
    var table = document.createElement("table");
    var head = document.createElement("tr");
    titles.forEach(function (title) {
      var th = document.createElement("th");
      th.textContent = title;
      head.appendChild(th);
    });
    table.appendChild(head);
    rows.forEach(function (values) {
      var row = document.createElement("tr");
      values.forEach(function (value) { row.appendChild(cell(value)); });
      table.appendChild(row);
    });
    return table;
  }

  // The gateway's view, when the console is reached through the gateway
  // (a region answers 404 for it: the page says where to look instead).
  function gatewayView(target) {
    fetch("/gateway/status", { credentials: "same-origin", headers: { "X-Tandem-Console": "1" } })
      .then(function (response) {
        return response.json().catch(function () { return {}; })
          .then(function (body) { return { ok: response.ok, status: response.status, body: body }; });
      })
      .then(function (answer) {
        target.textContent = "";
        if (!answer.ok) {
          var note = document.createElement("p");
          note.className = "note";
          note.textContent = answer.status === 404
            ? "This page is served by a region directly; open the console through the gateway to see its view."
            : "The gateway's view is not available: " + (answer.body.message || answer.status);
          target.appendChild(note);
          return;
        }
        var view = answer.body;
        var line = document.createElement("p");
        line.textContent = "The gateway sends writes to " + (view.primary ? view.primary.region : "no region yet") +
          " (it learns the primary from " + view.source + ", observed " +
          (view.observation_age_seconds === null ? "never" : Number(view.observation_age_seconds).toFixed(1) + " s ago") + ").";
        target.appendChild(line);
        target.appendChild(grid(["Region", "Healthy", "Ready", "Says it is", "Epoch", "Error"],
          (view.regions || []).map(function (region) {
            return [region.name, region.healthy ? "yes" : "no",
              region.ready === null || region.ready === undefined ? null : (region.ready ? "yes" : "no"),
              region.role, region.epoch, region.error];
          })));
      })
      .catch(function (error) {
        target.textContent = "The gateway does not answer: " + error;
      });
  }

  function cell(text) {
    var td = document.createElement("td");
    td.textContent = text === undefined || text === null ? "–" : String(text);
    return td;
  }

  // Planned: the primary hands over once the target holds every record it
  // has, so nothing acknowledged is lost; writes wait a moment meanwhile.
  function failover(target, to, from) {
    var question = "Planned failover from " + from + " to " + to + ": writes pause while " + to +
      " catches up and takes the lease (usually well under a second); nothing acknowledged is lost. Go ahead?";
    if (!window.confirm(question)) {
      return;
    }
    var outcome = document.getElementById("failover-outcome") || document.createElement("div");
    outcome.id = "failover-outcome";
    outcome.textContent = "Failing over to " + to + "…";
    // Beside the refreshed table, so the outcome stays on the page.
    target.parentNode.appendChild(outcome);
    fetch("/api/tandem/v1/failover", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Tandem-Console": "1" },
      body: JSON.stringify({ to: to })
    })
      .then(function (response) {
        return response.json().then(function (body) { return { ok: response.ok, body: body }; });
      })
      .then(function (answer) {
        if (!answer.ok) {
          outcome.className = "error";
          outcome.textContent = "The failover did not happen: " + (answer.body.message || "unknown error");
          return;
        }
        var report = answer.body;
        outcome.className = "done";
        outcome.textContent = "Done: " + report.to + " is primary (epoch " + report.epoch + "), " +
          (report.zero_loss ? "no write lost" : "writes may be lost") + ", in " + report.duration_ms + " ms.";
      })
      .catch(function (error) {
        outcome.className = "error";
        outcome.textContent = "The failover request failed: " + error;
      });
  }

  function refresh(target) {
    fetch(target.getAttribute("data-source"), { credentials: "same-origin", headers: { "X-Tandem-Console": "1" } })
      .then(function (response) {
        return response.json()
          .catch(function () { return { message: "The region answered " + response.status + " without a status." }; })
          .then(function (body) { return { ok: response.ok, status: response.status, body: body }; });
      })
      .then(function (answer) {
        if (answer.status === 401) {
          signedOut(target);
          return;
        }
        target.textContent = "";
        if (!answer.ok) {
          var message = document.createElement("p");
          message.className = "error";
          message.textContent = answer.body.message || "The deployment's status is not available here.";
          target.appendChild(message);
          return;
        }
        var status = answer.body;
        var summary = document.createElement("p");
        summary.className = "summary";
        summary.textContent = "Primary: " + (status.primary || "unknown") + " · epoch " + status.epoch +
          " · answered by " + status.region + (status.accepting_writes ? " (accepting writes)" : "") +
          (status.failover ? " · failover " + status.failover.mode : "") +
          (status.deployment ? " · deployment " + status.deployment : "");
        target.appendChild(summary);
        target.appendChild(heading("Regions"));
        target.appendChild(grid(
          ["Region", "Role", "Epoch", "Ready", "Replicating", "Applied", "Lag (records)", "Lag (s)", "Last error"],
          (status.regions || []).map(function (region) {
            var self = region.name === status.region;
            var replicating = region.streaming !== undefined ? region.streaming
              : region.connected !== undefined ? region.connected : null;
            return [region.name + (self ? " (this one)" : ""), region.role,
              self ? status.epoch : region.epoch,
              self ? (status.ready ? "yes" : "no") : null,
              replicating === null ? null : (replicating ? "yes" : "no"),
              region.applied, region.lag_records,
              region.lag_seconds === undefined ? null : Number(region.lag_seconds).toFixed(1),
              region.last_error];
          })));
        if ((status.classes || []).length) {
          target.appendChild(heading("Recovery point per class"));
          var classes = grid(["Class", "Level", "Sync", "RPO (s)", "max_rpo (s)", "Lag (records)", "Writes"],
            status.classes.map(function (entry) {
              return [entry.class, entry.level, entry.sync ? "yes" : "no", Number(entry.rpo_seconds).toFixed(1),
                entry.max_rpo_seconds === null || entry.max_rpo_seconds === undefined ? "none" : entry.max_rpo_seconds,
                entry.lag_records, entry.refusing_writes ? "refused: past max_rpo" : "accepted"];
            }));
          Array.prototype.forEach.call(classes.querySelectorAll("tr"), function (row, index) {
            if (index > 0 && status.classes[index - 1].refusing_writes) {
              row.className = "bad";
            }
          });
          target.appendChild(classes);
        }
        if (status.witness) {
          target.appendChild(heading("Witness"));
          var witness = document.createElement("p");
          witness.textContent = status.witness.kind + " · lease " + status.witness.ttl_seconds + " s, renewed every " +
            status.witness.renew_interval_seconds + " s · " +
            (status.witness.leading ? "this region holds the lease (epoch " + status.witness.leading + ")"
              : "this region does not hold the lease");
          target.appendChild(witness);
        }
        if (status.last_failover) {
          var last = document.createElement("p");
          last.className = "note";
          last.textContent = "Last failover seen here: to " + status.last_failover.to + " (epoch " +
            status.last_failover.epoch + ")" + (status.last_failover.zero_loss ? ", no write lost" : "");
          target.appendChild(last);
        }
        // A planned failover, for those the status answered (operators).
        var secondaries = (status.regions || []).filter(function (region) { return region.role !== "primary"; });
        if (secondaries.length && status.witness) {
          var controls = document.createElement("p");
          controls.className = "failover";
          secondaries.forEach(function (region) {
            var button = document.createElement("button");
            button.className = "danger";
            button.textContent = "Fail over to " + region.name;
            button.addEventListener("click", function () { failover(target, region.name, status.primary); });
            controls.appendChild(button);
          });
          target.appendChild(controls);
        }
      })
      .catch(function (error) {
        target.textContent = "";
        var message = document.createElement("p");
        message.className = "error";
        message.textContent = "This region does not answer: " + error;
        target.appendChild(message);
      });
  }
})();
