from django.http import HttpResponse


def healthz(request):
    return HttpResponse("ok")


def index(request):
    return HttpResponse("notes")
