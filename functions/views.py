"""Console pages for functions: placeholder replaced below."""

from django.http import HttpResponse


def _todo(request, *args, **kwargs):
    return HttpResponse("")


function_list = function_detail = function_deploy = function_invoke = function_rotate_key = function_delete = _todo
