// The timeline itself: one lane per criterion (and per supporting feature found), each
// piece of evidence a point at the child's age at onset (filled: counted; hollow: found
// but not counted; a triangle: no onset recorded, placed at the screening date, the
// latest it can have begun), and the age windows of the rule row that fired shaded.
// Observable Plot draws SVG; every point is focusable and named for screen readers.
import * as Plot from "@observablehq/plot";
import { axisFor, monthsAt } from "./ages.js";

const COUNTED = "#1f4e9c";
const NOT_COUNTED = "#595959";
const BAND = "#f3d27a";

export function drawTimeline(container, { account, lanes, points, bands, onFocus }) {
  const asOfMonths = monthsAt(account.birthDate, account.asOf);
  const axis = axisFor(asOfMonths);
  const width = Math.max(480, Math.floor(container.clientWidth));
  const laneIds = lanes.map((lane) => lane.id);
  const laneLabel = new Map(lanes.map((lane) => [lane.id, lane.label]));
  const placed = points.map((p) => ({ ...p, x: axis.toAxis(p.months) }));
  const shaded = bands.map((b) => ({ ...b, x1: axis.toAxis(b.fromMonths),
                                     x2: axis.toAxis(b.toMonths) }));
  const longest = Math.max(...lanes.map((lane) => lane.label.length));
  const figure = Plot.plot({
    width,
    height: 46 * lanes.length + 70,
    marginLeft: Math.min(360, 8 * longest + 20),
    marginRight: 24,
    marginBottom: 44,
    style: { fontSize: "14px", color: "#1a1a1a", background: "#ffffff" },
    ariaLabel: `Timeline of the evidence from birth to ${account.asOf}`,
    x: { domain: [0, axis.max], label: axis.label, labelAnchor: "center", labelOffset: 38,
         grid: true, tickFormat: axis.format, ticks: axis.ticks },
    y: { domain: laneIds, label: null, tickFormat: (id) => laneLabel.get(id), padding: 0.2 },
    marks: [
      Plot.barX(shaded, { x1: "x1", x2: "x2", y: "lane", fill: BAND, fillOpacity: 0.75,
                          title: "text", ariaLabel: "text", ariaDescription: "age window" }),
      Plot.ruleX([axis.toAxis(asOfMonths)], { stroke: "#3d3d3d", strokeDasharray: "4,3",
                                               ariaHidden: true }),
      Plot.dot(placed, {
        x: "x", y: "lane", r: 8, strokeWidth: 2.5,
        symbol: (p) => (p.undated ? "triangle" : "circle"),
        fill: (p) => (p.counted ? COUNTED : "#ffffff"),
        stroke: (p) => (p.counted ? COUNTED : NOT_COUNTED),
        title: "label",
        ariaLabel: "label",
      }),
    ],
  });
  figure.setAttribute("role", "group");
  // Plot draws the points in data order: name, number and focus each one.
  const dots = [...figure.querySelectorAll("g[aria-label='dot'] > *")];
  dots.forEach((dot, i) => {
    const point = placed[i];
    dot.setAttribute("tabindex", "0");
    dot.setAttribute("role", "img");
    dot.setAttribute("class", point.counted ? "point counted" : "point not-counted");
    dot.dataset.lane = point.lane;
    dot.dataset.months = point.months.toFixed(3);
    dot.addEventListener("focus", () => onFocus(point));
    dot.addEventListener("mouseenter", () => onFocus(point));
  });
  container.replaceChildren(figure);
  return figure;
}
