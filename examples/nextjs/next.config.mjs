/** @type {import('next').NextConfig} */
const nextConfig = {
  // tidings is a native addon: Next.js must require it at run time from
  // node_modules instead of bundling it into the server chunks.
  serverExternalPackages: ['tidings'],
};

export default nextConfig;
