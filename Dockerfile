# Production image: gunicorn serving backend.wsgi; configuration comes only from environment variables.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

COPY requirements.txt ./
RUN pip install -r requirements.txt

# Only the application code: never .env, .venv, db.sqlite3 or tests.
COPY manage.py gunicorn.conf.py ./
COPY backend ./backend
COPY apps ./apps

# Admin and API-docs assets, served by WhiteNoise.
RUN DJANGO_SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput

RUN useradd --create-home --uid 1000 app && chown app:app /app
USER app

# Metrics from every gunicorn worker, summed at each scrape (gunicorn.conf.py empties it at start).
ENV PROMETHEUS_MULTIPROC_DIR=/tmp/plantid-metrics
# glibc gives every thread that allocates at the same time an arena of its own (up to 8 per core) and keeps
# what is freed in each: 16 threads decoding 12 MP photos grew a worker by 158-193 MiB in a first run of 96,
# 104 MiB with 2 arenas (BENCHMARKS.md, "12 MP photos").
ENV MALLOC_ARENA_MAX=2

EXPOSE 8000

CMD ["sh", "-c", "mkdir -p \"$PROMETHEUS_MULTIPROC_DIR\" && python manage.py migrate && exec gunicorn -c gunicorn.conf.py backend.wsgi:application -b 0.0.0.0:8000 -w 4 -k gthread --threads 16"]
