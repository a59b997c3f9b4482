import os

from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from board.models import Note


def healthz(request):
    Note.objects.exists()  # the table exists: migrate ran
    return HttpResponse("ok")


def version(request):
    return HttpResponse(os.environ.get("APP_VERSION", "v-one"))


@csrf_exempt
def notes(request):
    if request.method == "POST":
        Note.objects.create(text=request.body.decode())
        return HttpResponse("saved", status=201)
    return HttpResponse("\n".join(n.text for n in Note.objects.all()))
