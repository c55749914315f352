"""Optional C accelerators. Everything else is configured in pyproject.toml.

Each extension is ``optional``: without a C compiler or Python headers the build carries on
and the pure-Python code paths are used (``OPENTRACING_SLS_PURE_PYTHON=1`` forces them).
"""

import glob

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("opentracing_sls._speedups", ["opentracing_sls/_speedups.c"], optional=True,
                  depends=["opentracing_sls/csrc/compat.h", "opentracing_sls/csrc/report_api.h"]),
        Extension("opentracing_sls._cspan", ["opentracing_sls/_cspan.c"], optional=True,
                  depends=sorted(glob.glob("opentracing_sls/csrc/*.h"))),
        Extension("opentracing_sls._cprop", ["opentracing_sls/_cprop.c"], optional=True,
                  depends=["opentracing_sls/csrc/compat.h",
                           "opentracing_sls/csrc/context_api.h"]),
        Extension("opentracing_sls.shim._ccompact", ["shim/_ccompact.c"], optional=True),
        Extension("opentracing_sls.shim._cstore", ["shim/_cstore.c"], optional=True),
        Extension("opentracing_sls.integrations._cglue", ["integrations/_cglue.c"],
                  optional=True, depends=["opentracing_sls/csrc/compat.h",
                                          "integrations/csrc/request_state.h"]),
        Extension("opentracing_sls.integrations._csend", ["integrations/_csend.c"],
                  optional=True, depends=["opentracing_sls/csrc/compat.h",
                                          "integrations/csrc/handlers.h"]),
        Extension("opentracing_sls.integrations._cflask", ["integrations/_cflask.c"],
                  optional=True, depends=["opentracing_sls/csrc/compat.h",
                                          "integrations/csrc/handlers.h",
                                          "integrations/csrc/request_state.h"]),
    ],
)
