// The page around the chart: who, the tier and the row that fired, the recommendation,
// the chart, the evidence table, what was not counted and what was not read.
import { drawTimeline } from "./chart.js";
import { el } from "./page.js";
import { buildModel } from "./model.js";

const TIER_WORDS = { high: "High likelihood", moderate: "Moderate likelihood",
                     low: "Low likelihood" };

function patientName(patient) {
  const name = (patient.name ?? [])[0];
  if (!name) return "Name not recorded";
  return name.text || [...(name.given ?? []), name.family].filter(Boolean).join(" ") ||
         "Name not recorded";
}

function summary(account, patient, rules) {
  const criteria = Object.keys(account.criteria);
  const met = criteria.length ? `Criteria met: ${criteria.join(", ")}.` : "No criteria met.";
  const row = account.firedRow;
  let recommendation;
  if (account.suppressed) {
    recommendation = `No test recommended: ${account.suppression.map((s) => s.reason).join("; ")}.`;
  } else {
    recommendation = account.mitigation ?? `No test recommended (tier ${account.tier}).`;
  }
  return el("section", { className: `summary tier-${account.tier}`, "aria-labelledby": "tier" },
    el("h2", { id: "tier" }, `${TIER_WORDS[account.tier]} (rule ${row.row})`),
    el("p", { className: "who" },
      `${patientName(patient)}, born ${account.birthDate ?? "on an unrecorded date"}, ` +
      `sex ${account.sex}; screened as of ${account.asOf}.`),
    el("p", { className: "met" }, met),
    el("p", {}, el("strong", {}, "Rule that fired: "), `${row.row}. ${row.rule}`),
    el("p", {}, el("strong", {}, "Recommendation: "), recommendation),
    el("p", { className: "rules" },
      `${rules.title} (rule set ${rules.version} of ${rules.date}). `,
      el("a", { href: "../source-attributes" }, "Who made these rules, from which evidence"),
      "."),
  );
}

function legend(model) {
  return el("ul", { className: "legend", "aria-label": "Legend" },
    el("li", {}, el("span", { className: "key counted", "aria-hidden": "true" }),
       "counted toward the rules"),
    el("li", {}, el("span", { className: "key not-counted", "aria-hidden": "true" }),
       "found, not counted (why: in the list below)"),
    el("li", {}, el("span", { className: "key undated", "aria-hidden": "true" }),
       "no onset date recorded: placed at the screening date"),
    model.bands.length
      ? el("li", {}, el("span", { className: "key band", "aria-hidden": "true" }),
           "shaded: the onset ages the rule that fired allows")
      : null,
  );
}

function evidenceTable(model) {
  const body = model.rows.map((r) => el("tr", {},
    el("th", { scope: "row" }, `${r.lane}: ${r.display}`),
    el("td", {}, r.evidence.description + (r.evidence.detail ? ` (${r.evidence.detail})` : "")),
    el("td", {}, r.evidence.code),
    el("td", {}, r.evidence.onset ?? "not recorded"),
    el("td", {}, r.evidence.ageAtOnset),
    el("td", {}, r.status)));
  return el("table", { className: "evidence" },
    el("caption", {}, "Evidence on the timeline"),
    el("thead", {}, el("tr", {}, ...["Criterion or feature", "Evidence", "Code", "Onset",
                                     "Age at onset", "Counted?"].map(
      (h) => el("th", { scope: "col" }, h)))),
    el("tbody", {}, body.length ? body
      : [el("tr", {}, el("td", { colSpan: 6 }, "No criterion or supporting feature was found."))]));
}

function notCountedList(account, model) {
  const items = [
    ...model.rows.filter((r) => !r.counted).map((r) =>
      `${r.lane}: ${r.evidence.description} [${r.evidence.code}]: ${r.status}`),
    ...account.notCounted.map((n) => `${n.what}: ${n.reason}`),
  ];
  return el("section", { "aria-labelledby": "not-counted" },
    el("h2", { id: "not-counted" }, "Found, not counted"),
    items.length ? el("ul", {}, items.map((t) => el("li", {}, t)))
                 : el("p", {}, "Nothing was found and left uncounted."));
}

function notReadList(account) {
  if (!account.notRead.length) return null;
  return el("section", { "aria-labelledby": "not-read" },
    el("h2", { id: "not-read" }, "Not read (could have changed the result)"),
    el("ul", {}, account.notRead.map((n) => el("li", {}, `${n.location}: ${n.reason}`))));
}

export function renderTimeline(root, { account, patient, rules }) {
  const model = buildModel(account, rules);
  const detail = el("p", { id: "point-detail", className: "point-detail", "aria-live": "polite" },
                    "Focus or point at a mark to read it here.");
  const chart = el("div", { className: "chart" });
  const figure = el("figure", { "aria-labelledby": "chart-title" },
    el("figcaption", { id: "chart-title" },
      "Each criterion and supporting feature at the child's age at onset, birth to the " +
      "screening date"),
    legend(model), chart, detail);
  root.replaceChildren(summary(account, patient, rules), figure, evidenceTable(model),
                       notCountedList(account, model), notReadList(account) ?? "");
  root.hidden = false;
  if (account.birthDate) {
    drawTimeline(chart, { account, ...model,
                          onFocus: (point) => { detail.textContent = point.label; } });
  } else {
    chart.replaceChildren(el("p", {}, "The record has no usable birth date: no age can be " +
                                       "placed on a timeline. The evidence is listed below."));
  }
  return model;
}
