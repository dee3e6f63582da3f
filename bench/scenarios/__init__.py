"""One module per scenario, each with a `Config`, an async `run(ctx, config)` returning a
JSON-able dict, and `summary(result)` lines for the table printed at the end."""
