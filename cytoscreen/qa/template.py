# ruff: noqa: E501  (HTML template text: lines follow the markup, not Python)
"""The HTML report template (Jinja2, rendered with autoescaping on: every value is escaped)."""

REPORT_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>cytoscreen QA - {{ data.manifest }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .6em 0; }
td, th { border: 1px solid #ccc; padding: .25em .6em; text-align: left; font-size: .92em; }
th { background: #f2f2f2; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.data { color: #555; font-size: .88em; } .warn { background: #fff4d6; padding: .5em 1em; }
img { max-width: 100%; border: 1px solid #eee; }
</style></head><body>
<h1>Screening QA: {{ data.manifest }}</h1>
<p class="data">Measured on {{ describe }}.<br>
Results: {{ data.results }}<br>
Model {{ data.model_id or "unknown" }}, aggregation rule {{ data.rule or "unknown" }};
threshold {{ fmt(threshold) }} ({{ threshold_source }}).<br>
Intervals are exact (Clopper-Pearson) {{ pct }} intervals; the AUC interval is a stratified
bootstrap ({{ n_bootstrap }} resamples). cytoscreen {{ version }}, {{ created }}.</p>
{% if warnings %}<div class="warn"><b>Warnings</b><ul>
{% for w in warnings %}<li>{{ w }}</li>{% endfor %}</ul></div>{% endif %}

<h2>At the calibrated threshold</h2>
{% if at %}
<table><tr><th>measure</th><th>value</th><th>count</th><th>{{ pct }} CI</th></tr>
{% for name, p in at_rows %}<tr><td>{{ name }}</td>
{% if p and p.measured %}<td class="n">{{ "%.3f"|format(p.value) }}</td><td class="n">{{ p.k }}/{{ p.n }}</td>
<td class="n">{{ "%.3f"|format(p.lower) }} - {{ "%.3f"|format(p.upper) }}</td>
{% else %}<td colspan="3">not measurable (no slides in the denominator)</td>{% endif %}</tr>
{% endfor %}</table>
<p class="data">TP {{ at.counts.tp }}, FN {{ at.counts.fn }}, TN {{ at.counts.tn }},
FP {{ at.counts.fp }} on the assessable slides of {{ describe }}. Workload reduction: slides
set aside as negative among all {{ data.n_positive + data.n_negative }} labelled slides
(not-assessable slides are never set aside).</p>
{% else %}<p>No threshold to evaluate: {{ threshold_source }}.</p>{% endif %}
{% if images.confusion %}<img alt="calls by truth" src="data:image/png;base64,{{ images.confusion }}">{% endif %}

<h2>Not assessable ({{ not_assessable|length }} labelled slides, reported apart)</h2>
{% if not_assessable %}<table><tr><th>slide</th><th>truth</th><th>status</th><th>why</th></tr>
{% for r in not_assessable %}<tr><td>{{ r.slide_id }}</td><td>{{ r.label }}</td>
<td>{{ r.status }}</td><td>{{ r.why }}</td></tr>{% endfor %}</table>
{% else %}<p>None.</p>{% endif %}
{% if data.n_blank %}<p>Blank slides ({{ data.n_blank }}; expected not assessable):
{% for k, v in blank_calls.items() %}{{ k }} {{ v }}{% if not loop.last %}, {% endif %}{% endfor %}.</p>{% endif %}

<h2>Across all thresholds</h2>
{% if roc %}<p>AUC {{ "%.3f"|format(roc.auc) }} ({{ pct }} CI {{ "%.3f"|format(roc.auc_lower) }} -
{{ "%.3f"|format(roc.auc_upper) }}) on {{ roc.n_positive }} positive and {{ roc.n_negative }}
negative assessable slides of {{ describe }}.</p>
{% if images.roc %}<img alt="ROC curve" src="data:image/png;base64,{{ images.roc }}">{% endif %}
{% else %}<p>No ROC curve: it needs assessable slides of both classes.</p>{% endif %}
{% if points %}<h3>Operating points</h3>
<table><tr><th>target sensitivity</th><th>threshold</th><th>sensitivity (count, CI)</th>
<th>specificity (count, CI)</th><th>workload reduction</th></tr>
{% for op in points %}<tr><td class="n">{{ op.target }}</td>
{% if op.figures %}<td class="n">{{ fmt(op.threshold) }}</td>
<td class="n">{{ prop(op.figures.sensitivity) }}</td><td class="n">{{ prop(op.figures.specificity) }}</td>
<td class="n">{{ prop(op.figures.set_aside) }}</td>
{% else %}<td colspan="4">no positive slide to choose a threshold on</td>{% endif %}</tr>
{% endfor %}</table>
<p class="data">Each threshold is chosen and measured on the same slides, so the figures are
optimistic; workload reduction is over all {{ data.n_positive + data.n_negative }} labelled
slides. Measured on {{ describe }}.</p>{% endif %}
{% if images.scores %}<img alt="score distributions" src="data:image/png;base64,{{ images.scores }}">{% endif %}

{% if by_category %}<h2>Sensitivity by worst Bethesda category</h2>
<table><tr><th>category</th><th>sensitivity (count, {{ pct }} CI)</th></tr>
{% for cat, p in by_category.items() %}<tr><td>{{ cat }}</td><td class="n">{{ prop(p) }}</td></tr>
{% endfor %}</table><p class="data">Assessable positive slides of {{ describe }}, at threshold {{ fmt(threshold) }}.</p>{% endif %}

{% if by_site %}<h2>By site</h2>
<table><tr><th>site</th><th>sensitivity</th><th>specificity</th><th>workload reduction</th></tr>
{% for site, op in by_site.items() %}<tr><td>{{ site }}</td><td class="n">{{ prop(op.sensitivity) }}</td>
<td class="n">{{ prop(op.specificity) }}</td><td class="n">{{ prop(op.set_aside) }}</td></tr>
{% endfor %}</table>{% endif %}

{% if field_hits %}<h2>Fields against cell truth</h2>
<table><tr><th>top N fields</th><th>slides whose top N fields show a true abnormal cell</th></tr>
{% for n, p in field_hits.hit_at.items() %}<tr><td class="n">{{ n }}</td><td class="n">{{ prop(p) }}</td></tr>
{% endfor %}</table>
<p class="data">{{ field_hits.n_slides }} assessable positive slides with cell truth
({{ field_hits.never_hit }} where no listed field shows an abnormal cell), {{ describe }}.</p>{% endif %}
</body></html>
"""

COMPARE_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>cytoscreen QA comparison</title>
<style>body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 60em; }
td, th { border: 1px solid #ccc; padding: .25em .6em; } table { border-collapse: collapse; }
.data { color: #555; font-size: .88em; }</style></head><body>
<h1>Two runs on {{ data.manifest }}</h1>
<p class="data">Paired on the {{ paired.n_positive }} positive and {{ paired.n_negative }}
negative slides assessable in both runs, of {{ describe }}.</p>
<table><tr><th></th><th>A: {{ a.results }}</th><th>B: {{ b.results }}</th></tr>
<tr><td>model</td><td>{{ a.model_id }}</td><td>{{ b.model_id }}</td></tr>
<tr><td>AUC (paired slides)</td><td>{{ "%.3f"|format(paired.auc_a) }}</td>
<td>{{ "%.3f"|format(paired.auc_b) }}</td></tr>
{% for name in ("sensitivity", "specificity", "set_aside") %}
<tr><td>{{ name }} at its calibrated threshold (all slides)</td>
<td>{{ prop(at_a[name] if at_a else None) }}</td><td>{{ prop(at_b[name] if at_b else None) }}</td></tr>
{% endfor %}</table>
<p>AUC difference B - A: {{ "%+.3f"|format(paired.difference) }} ({{ pct }} CI
{{ "%+.3f"|format(paired.lower) }} to {{ "%+.3f"|format(paired.upper) }}), DeLong p =
{{ "%.3g"|format(paired.p_value) }}. {{ verdict }}</p>
</body></html>
"""
