"""Open311 GeoReport v2 interface over the appeals and dispatch services."""
