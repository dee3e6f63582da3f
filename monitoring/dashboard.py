"""The Birdwatch Grafana dashboard, built with Grafana's own SDK from the panels of
monitoring/panels.py: variables (data source, job), one row per group, JSON as committed.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common, dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
)
from grafana_foundation_sdk.models.dashboard import (
    DashboardCursorSync,
    DataSourceRef,
    VariableRefresh,
)

from monitoring.panels import ROWS, Panel, panels

__all__ = ["UID", "build", "panels", "render"]

UID = "birdwatch"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")


def _panel(spec: Panel, panel_id: int) -> timeseries.Panel | stat.Panel:
    built: timeseries.Panel | stat.Panel
    if spec.kind == "timeseries":
        built = timeseries.Panel().legend(
            common.VizLegendOptions()
            .display_mode(LegendDisplayMode.LIST)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    else:
        built = (
            stat.Panel()
            .graph_mode(BigValueGraphMode.AREA)
            .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]))
        )
    built.id(panel_id).title(spec.title).description(spec.description).unit(spec.unit)
    built.datasource(DATASOURCE).span(spec.width).height(8)
    for ref, query in zip("ABCDEFGH", spec.queries, strict=False):
        built.with_target(
            prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref)
        )
    return built


def build() -> dashboard.Dashboard:
    board = (
        dashboard.Dashboard("Birdwatch")
        .uid(UID)
        .description("The Birdwatch consumer group: throughput, lag, latency, outcomes.")
        .tags(["birdwatch", "kafka"])
        .refresh("30s")
        .time("now-1h", "now")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
        )
        .with_variable(
            dashboard.QueryVariable("job")
            .label("Job")
            .datasource(DATASOURCE)
            .query("label_values(birdwatch_records_consumed_total, job)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .include_all(True)
            .all_value(".*")
            .multi(True)
        )
    )
    panel_id = 0
    for title, row in ROWS:
        panel_id += 1
        board.with_row(dashboard.Row(title).id(panel_id))
        for spec in row:
            panel_id += 1
            board.with_panel(_panel(spec, panel_id))
    return board


def render() -> str:
    """The dashboard JSON, as committed (sorted keys, two-space indent, final newline)."""
    return JSONEncoder(sort_keys=True, indent=2).encode(build().build()) + "\n"
