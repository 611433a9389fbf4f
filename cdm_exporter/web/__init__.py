"""The exporter's HTTP surface: the WSGI application and the threaded HTTP(S) server it runs on."""
