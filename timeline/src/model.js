// From the service's account to what the page draws: lanes, points, shaded age windows,
// and the lists of what was found but not counted, and not read. No patient data is kept
// anywhere but in these objects, which die with the page.
import { monthsAt } from "./ages.js";

function evidenceLabel(lane, e, status) {
  const when = e.onset ? `onset ${e.onset} (age ${e.ageAtOnset})`
                       : `date not recorded (age ${e.ageAtOnset})`;
  const detail = e.detail ? `; ${e.detail}` : "";
  return `${lane}: ${e.description} [${e.code}], ${when}${detail}; ${status}`;
}

export function buildModel(account, rules) {
  const categories = new Map(rules.categories.map((c) => [c.id, c]));
  const asOfMonths = account.birthDate ? monthsAt(account.birthDate, account.asOf) : 0;
  const months = (e) => (e.onset ? monthsAt(account.birthDate, e.onset) : asOfMonths);
  const points = [];
  const rows = [];
  const add = (lane, e, counted, status) => {
    const label = evidenceLabel(lane, e, status);
    points.push({ lane, months: months(e), undated: !e.onset, counted, label });
    rows.push({ lane, display: categories.get(lane)?.display ?? lane, evidence: e, counted,
                status });
  };
  for (const [id, finding] of Object.entries(account.criteria)) {
    const part = finding.partOf ? ` (part of ${finding.partOf})` : "";
    for (const e of finding.evidence) add(id, e, true, `counted for ${id}${part}`);
  }
  const counted = new Set(account.supportingCounted);
  const limit = account.supportingOnsetBefore?.text ?? "the supporting limit";
  for (const [id, finding] of Object.entries(account.supporting)) {
    for (const e of finding.evidence) {
      add(id, e, counted.has(id), counted.has(id) ? "counted as a supporting feature"
        : `found, not counted: a supporting feature counts only when it began before ${limit}`);
    }
  }
  for (const x of account.explained) {
    const cause = x.explainedBy;
    add(x.category, x, false, `found, not counted: explained by ${cause.description} ` +
        `[${cause.code}] (${cause.onset ?? "onset not recorded"}; ${cause.window})`);
  }
  const used = new Set(points.map((p) => p.lane));
  const lanes = rules.categories
    .filter((c) => c.kind === "criterion" || used.has(c.id))
    .map((c) => ({ id: c.id, kind: c.kind, label: `${c.id}: ${c.display}` }));
  return { lanes, points, rows, bands: ageWindows(account, lanes, asOfMonths) };
}

function ageWindows(account, lanes, asOfMonths) {
  const supportingLanes = lanes.filter((l) => l.kind === "supporting").map((l) => l.id);
  const bands = [];
  const row = account.firedRow;
  for (const requirement of row.requirements) {
    const from = requirement.onsetAtOrAfter;
    const before = requirement.onsetBefore;
    if (!from && !before) continue;
    const fromMonths = from ? monthsAt(account.birthDate, from.reachedOn) : 0;
    const toMonths = before ? monthsAt(account.birthDate, before.reachedOn) : asOfMonths;
    const start = Math.min(fromMonths, asOfMonths);
    const end = Math.min(toMonths, asOfMonths);
    if (end <= start) continue;
    const window = [from ? `at ${from.text} or later` : null,
                    before ? `before ${before.text}` : null].filter(Boolean).join(" and ");
    for (const alternative of requirement.anyOf) {
      const targets = alternative.criterion ? [alternative.criterion] : supportingLanes;
      const what = alternative.criterion ?? `${alternative.supportingFeatures} supporting feature`;
      for (const lane of targets) {
        if (!lanes.some((l) => l.id === lane)) continue;
        bands.push({ lane, fromMonths: start, toMonths: end,
                     text: `Rule ${row.row}: ${what} with onset ${window}` });
      }
    }
  }
  return bands;
}

