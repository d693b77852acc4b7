"""The web server: tracking endpoints, subscriber pages and (later) the staff dashboard."""
