# A local stand-in for the official nginx image, which cannot be pulled here:
# Debian's nginx on the slim Debian base, configured as the official image is
# (the http block includes /etc/nginx/conf.d/*.conf, nothing else is
# served, logs go to the container's stdout/stderr, runs in the foreground).
# Built by .ci/docker-images for the compose test; never published.
ARG BASE
FROM ${BASE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* \
 && ln -sf /dev/stdout /var/log/nginx/access.log \
 && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
