"""WSGI entry point: ``gunicorn wsgi:app`` (a ``.env`` file, if present, is read first)."""

from dotenv import load_dotenv

from chatbot_sessions import create_app

load_dotenv()
app = create_app()
