"""共富指标体系: indicator catalog with targets, observations by period and unit, progress, forecast."""
