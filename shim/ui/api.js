// The query API client: GET /api/..., unwrap the {data, errors} envelope.

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

// Joins the envelope's error messages; "code - msg" when the code differs from the status.
function errorMessage(body, status) {
  const errors = (body && body.errors) || [];
  if (!errors.length) return `HTTP ${status}`;
  return errors
    .map((e) => (e.code && e.code !== status ? `${e.code} - ${e.msg}` : e.msg))
    .join("; ");
}

// GET /api/<path>?<params>; resolves to the whole envelope. `params` may repeat keys when
// given as an array of pairs.
export async function getJSON(path, params) {
  const query = params ? new URLSearchParams(params).toString() : "";
  const url = `/api/${path}${query ? `?${query}` : ""}`;
  let response;
  try {
    response = await fetch(url, { credentials: "same-origin" });
  } catch (err) {
    throw new ApiError(`cannot reach the query server: ${err.message}`, 0);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    throw new ApiError(`HTTP ${response.status}: the answer is not JSON`, response.status);
  }
  if (response.status >= 400) throw new ApiError(errorMessage(body, response.status),
    response.status);
  return body;
}

export async function getData(path, params) {
  return (await getJSON(path, params)).data;
}

export const api = {
  services: () => getData("services"),
  operations: (service) => getData(`services/${encodeURIComponent(service)}/operations`),
  searchTraces: (params) => getJSON("traces", params),
  trace: (id) => getData(`traces/${encodeURIComponent(id)}`),
  dependencies: (endTs, lookback) => getData("dependencies", { endTs, lookback }),
  stats: (params) => getData("stats", params),
};
