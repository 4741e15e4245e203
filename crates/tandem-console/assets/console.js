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
