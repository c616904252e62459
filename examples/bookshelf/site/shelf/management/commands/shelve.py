import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from docopt import DocoptExit, docopt

from shelf.models import Note

USAGE = """Put notes on the shelf.

Usage:
  shelve <text>...
"""


class Command(BaseCommand):
    help = "Put each <text> on the shelf as a note."

    def add_arguments(self, parser: CommandParser) -> None:
        # argparse keeps Django's common options; docopt owns the command's own syntax.
        parser.add_argument("argv", nargs=argparse.REMAINDER)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            arguments = docopt(USAGE, argv=options["argv"], help=False)
        except DocoptExit as exc:
            raise CommandError(str(exc).strip()) from None
        for text in arguments["<text>"]:
            if len(text) > Note._meta.get_field("text").max_length:
                raise CommandError(f"too long for a note (200 characters at most): {text[:20]}...")
            note = Note.objects.create(text=text)
            if options["verbosity"] > 0:
                self.stdout.write(f"shelved note {note.pk}: {text}")
