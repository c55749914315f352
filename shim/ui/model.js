// Jaeger JSON traces -> what the views draw: a span tree in display order, trace extent,
// services and errors. Pure functions (no DOM), so they also run under Node for tests.

function isError(span) {
  return (span.tags || []).some((t) => t.key === "error" && (t.value === true || t.value === "true"));
}

function parentRef(span) {
  const refs = span.references || [];
  return refs.find((r) => r.refType === "CHILD_OF") || refs[0] || null;
}

// Builds the tree of one trace. Every span gets: key (unique even when span ids repeat,
// as Zipkin's shared client/server spans do), process, depth, children, parent, error.
// `order` lists the spans depth-first, children by start time; spans whose parent is not in
// the trace are roots. Linear apart from sorting.
export function prepareTrace(trace) {
  const processes = trace.processes || {};
  const spans = [];
  const byId = new Map();
  for (const raw of trace.spans || []) {
    if (!raw.startTime) continue; // as the Jaeger UI: a span without a start cannot be placed
    const span = {
      ...raw,
      key: raw.spanID,
      process: processes[raw.processID] || { serviceName: "unknown", tags: [] },
      children: [],
      parent: null,
      depth: 0,
      error: isError(raw),
    };
    const same = byId.get(raw.spanID);
    if (same) {
      span.key = `${raw.spanID}_${same.length}`;
      same.push(span);
    } else byId.set(raw.spanID, [span]);
    spans.push(span);
  }
  for (const span of spans) {
    const ref = parentRef(span);
    const candidates = ref ? (byId.get(ref.spanID) || []).filter((c) => c !== span) : [];
    // Shared span ids: prefer the candidate of the span's own service.
    span.parent = candidates.find((c) => c.process.serviceName === span.process.serviceName) ||
      candidates[0] || null;
  }
  const roots = [];
  for (const span of spans) (span.parent ? span.parent.children : roots).push(span);
  const byStart = (a, b) => a.startTime - b.startTime;
  roots.sort(byStart);
  const order = [];
  const seen = new Set();
  const walk = (root) => {
    const stack = [[root, 0]];
    while (stack.length) {
      const [span, depth] = stack.pop();
      if (seen.has(span)) continue;
      seen.add(span);
      span.depth = depth;
      order.push(span);
      span.children.sort(byStart);
      for (let i = span.children.length - 1; i >= 0; i--) stack.push([span.children[i], depth + 1]);
    }
  };
  roots.forEach(walk);
  // A parent cycle (malformed input) leaves spans unvisited: show them as roots.
  for (const span of spans) {
    if (!seen.has(span)) {
      span.parent = null;
      walk(span);
    }
  }
  let start = Infinity;
  let end = -Infinity;
  const services = new Map();
  let errors = 0;
  let maxDepth = 0;
  for (const span of spans) {
    start = Math.min(start, span.startTime);
    end = Math.max(end, span.startTime + span.duration);
    const name = span.process.serviceName;
    services.set(name, (services.get(name) || 0) + 1);
    if (span.error) errors++;
    maxDepth = Math.max(maxDepth, span.depth);
  }
  const root = roots[0] || order[0] || null;
  return {
    traceID: (trace.traceID || "").toLowerCase(),
    spans,
    order,
    roots,
    start: spans.length ? start : 0,
    duration: spans.length ? end - start : 0,
    services,
    errors,
    depth: spans.length ? maxDepth + 1 : 0,
    name: root ? `${root.process.serviceName}: ${root.operationName}` : "(no spans)",
  };
}

// The spans shown when the spans in `collapsed` (a Set of keys) hide their descendants.
export function visibleSpans(order, collapsed) {
  if (!collapsed.size) return order;
  const out = [];
  let hideBelow = -1;
  for (const span of order) {
    if (hideBelow >= 0) {
      if (span.depth > hideBelow) continue;
      hideBelow = -1;
    }
    out.push(span);
    if (collapsed.has(span.key) && span.children.length) hideBelow = span.depth;
  }
  return out;
}

// Per service: span count and self time (duration not covered by the span's children),
// the "where did the time go" summary of the trace view.
export function serviceBreakdown(prepared) {
  const rows = new Map();
  for (const span of prepared.spans) {
    const name = span.process.serviceName;
    const row = rows.get(name) || { service: name, spans: 0, selfTime: 0, errors: 0 };
    row.spans++;
    row.selfTime += selfTime(span);
    if (span.error) row.errors++;
    rows.set(name, row);
  }
  return [...rows.values()].sort((a, b) => b.selfTime - a.selfTime);
}

// The span's duration minus the union of its children's intervals clipped to the span.
export function selfTime(span) {
  const startOf = span.startTime;
  const endOf = span.startTime + span.duration;
  const intervals = span.children
    .map((c) => [Math.max(startOf, c.startTime), Math.min(endOf, c.startTime + c.duration)])
    .filter(([a, b]) => b > a)
    .sort((a, b) => a[0] - b[0]);
  let covered = 0;
  let curStart = -Infinity;
  let curEnd = -Infinity;
  for (const [a, b] of intervals) {
    if (a > curEnd) {
      if (curEnd > curStart) covered += curEnd - curStart;
      curStart = a;
      curEnd = b;
    } else curEnd = Math.max(curEnd, b);
  }
  if (curEnd > curStart) covered += curEnd - curStart;
  return Math.max(0, span.duration - covered);
}
