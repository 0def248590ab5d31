"""Interactive widgets for notebooks: the attribute explorer (see `parkit.widgets.explorer`)."""
from parkit.widgets.explorer import (DEFAULT_THRESHOLD, OUTCOME_COLORS, OUTCOMES, AttributeExplorer, bar_colors,
                                     classify_errors, explorer_view_figure, filter_wrong,
                                     probability_bar_figure,
                                     probability_bars_html, summarize_errors)

__all__ = ["AttributeExplorer", "DEFAULT_THRESHOLD", "OUTCOMES", "OUTCOME_COLORS", "bar_colors",
           "classify_errors", "explorer_view_figure", "filter_wrong", "probability_bar_figure", "probability_bars_html",
           "summarize_errors"]
