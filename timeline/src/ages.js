// Ages along the child's life, as the axis shows them: months up to two years, then years.

const DAY = 24 * 60 * 60 * 1000;
const MONTH_DAYS = 365.25 / 12;

export function parseDate(text) {
  if (!text) return null;
  const [y, m, d] = text.split("-").map(Number);
  return Date.UTC(y, (m || 1) - 1, d || 1);
}

/** Age in months (fractional) at an ISO date, counted from the birth date. */
export function monthsAt(birthDate, isoDate) {
  return (parseDate(isoDate) - parseDate(birthDate)) / DAY / MONTH_DAYS;
}

export function axisFor(maxMonths) {
  const inYears = maxMonths >= 24;
  const scale = inYears ? 12 : 1;
  const max = Math.max(maxMonths / scale, inYears ? 2 : 1) * 1.02;
  const step = inYears ? (max <= 10 ? 1 : 2) : (max <= 12 ? 1 : 2);
  const ticks = [];
  for (let t = 0; t <= max; t += step) ticks.push(t);
  return {
    inYears,
    ticks,
    label: inYears ? "Age (years)" : "Age (months)",
    toAxis: (months) => months / scale,
    max,
    format: (value) => (inYears ? `${value} y` : `${value} mo`),
  };
}
