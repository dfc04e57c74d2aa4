"""deploykit inside the platforms users already run (issue 17): ``mlflow`` (a model flavor: save, log,
load, pyfunc) — Ray next. Each integration imports its platform lazily and is an extra."""
