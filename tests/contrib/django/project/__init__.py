"""A real Django project on SQLite, used by tests/contrib/django (and run by
``manage.py`` in a subprocess). ``shop`` exercises the relay app (subs, the
database middleware, runrelay); ``billing`` the django.tasks backend and the
shared result store."""
