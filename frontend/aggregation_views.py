"""The curator dashboard: the panel's grade distributions, agreement and experts, as SVG charts
rendered on the server (`frontend.charts`)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from annotation.access.roles import CURATOR
from annotation.aggregation import selectors
from annotation.aggregation.retirement_selectors import retirement_overview
from frontend.charts import bar_chart, heatmap_chart, histogram_chart, interval_chart, progress_bar
from frontend.views import role_required

# Resamples of the alpha and kappa confidence intervals on the page (benchmarks/
# aggregation_scale.py times them at the paper's scale).
DASHBOARD_BOOTSTRAP = 1000


def _dashboard_charts(stats: selectors.PanelStatistics) -> dict[str, object]:
    figure = stats.figure3
    per_clip = figure["ratings_per_clip"]
    agreement = stats.agreement
    return {
        "mean_std": heatmap_chart(
            figure["mean_std_hist"], x_edges=figure["mean_edges"], y_edges=figure["std_edges"]
        ),
        "modes": bar_chart(figure["mode_hist"], width=400, unit="clips", x_label="grade mode"),
        "votes_per_grade": bar_chart(
            figure["votes_per_grade"], width=400, unit="votes", x_label="grade"
        ),
        "ratings_per_clip": histogram_chart(
            [str(k) for k in range(len(per_clip))], per_clip, unit="clips", x_label="votes"
        ),
        "ratings_per_expert": histogram_chart(
            [e.rater for e in stats.experts],
            figure.get("ratings_per_expert", []),
            max_ticks=8,
            unit="votes",
            x_label="expert (every label in the table)",
        ),
        "agreement": interval_chart(
            [
                (
                    "Krippendorff α",
                    agreement.alpha,
                    agreement.alpha_ci_low,
                    agreement.alpha_ci_high,
                ),
                (
                    "Fleiss κ",
                    agreement.fleiss_kappa,
                    agreement.fleiss_kappa_ci_low,
                    agreement.fleiss_kappa_ci_high,
                ),
            ],
            confidence=agreement.confidence,
        ),
        "retired": progress_bar(stats.retirement.n_retired, stats.retirement.n_clips),
    }


@require_GET
@role_required(CURATOR)
def dashboard(request: HttpRequest) -> HttpResponse:
    stats = selectors.panel_statistics(bootstrap=DASHBOARD_BOOTSTRAP)
    context = {
        "stats": stats,
        "charts": _dashboard_charts(stats),
        "retirement": retirement_overview(),
    }
    return render(request, "frontend/dashboard.html", context)
